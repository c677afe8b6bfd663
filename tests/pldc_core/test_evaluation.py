import math

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from pldc_core.evaluation import CocoEvaluator, coco_mask_ap, instance_inference, predictions_to_coco
from pldc_core.structures import Categories

CATS = [{"id": 3, "name": "cat", "supercategory": "animal"}, {"id": 7, "name": "dog", "supercategory": "animal"}]
H = W = 64


def box_mask(x0, y0, w, h, size=(H, W)):
    m = np.zeros(size, dtype=bool)
    m[y0:y0 + h, x0:x0 + w] = True
    return m


def rle(mask):
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": r["size"], "counts": r["counts"].decode("utf-8")}


def make_gt(instances):
    """instances: list of (image_id, category_id, mask)."""
    image_ids = sorted({i for i, _, _ in instances} | {1, 2})
    anns = [{"id": k + 1, "image_id": i, "category_id": c, "segmentation": rle(m), "area": int(m.sum()),
             "bbox": [float(v) for v in mask_utils.toBbox(mask_utils.encode(np.asfortranarray(m.astype(np.uint8))))],
             "iscrowd": 0} for k, (i, c, m) in enumerate(instances)]
    return {"images": [{"id": i, "height": H, "width": W, "file_name": f"{i}.png"} for i in image_ids],
            "annotations": anns, "categories": CATS}


def result(image_id, category_id, mask, score=0.9):
    return {"image_id": image_id, "category_id": category_id, "segmentation": rle(mask), "score": score}


GT_INSTANCES = [(1, 3, box_mask(5, 5, 20, 20)), (1, 7, box_mask(30, 30, 30, 25)), (2, 3, box_mask(0, 40, 50, 20))]


def test_perfect_predictions_give_100():
    gt = make_gt(GT_INSTANCES)
    metrics = coco_mask_ap(gt, [result(i, c, m) for i, c, m in GT_INSTANCES])
    assert metrics["AP"] == pytest.approx(100.0)
    assert metrics["AP50"] == pytest.approx(100.0)
    assert metrics["AP75"] == pytest.approx(100.0)
    # areas 400 (small), 750 and 1000 (small, < 32^2), so medium/large have no GT: NaN, not -100
    assert metrics["APs"] == pytest.approx(100.0)
    assert math.isnan(metrics["APm"]) and math.isnan(metrics["APl"])


@pytest.mark.parametrize("width, shift, iou, ap", [
    (8, 2, 0.6, None),     # (8-2)*10 / ((8+2)*10): on the 0.60 threshold itself, so only AP50/AP75 are checked
    (13, 3, 0.625, 30.0),  # 10/16: matched at IoU 0.50, 0.55, 0.60 -> 3 of 10 thresholds -> AP 30
])
def test_shifted_mask_matches_only_below_its_iou(width, shift, iou, ap):
    gt_mask = box_mask(10, 10, width, 10)
    pred_mask = box_mask(10 + shift, 10, width, 10)
    inter, union = (gt_mask & pred_mask).sum(), (gt_mask | pred_mask).sum()
    assert inter / union == pytest.approx(iou)
    metrics = coco_mask_ap(make_gt([(1, 3, gt_mask)]), [result(1, 3, pred_mask)])
    assert metrics["AP50"] == pytest.approx(100.0)
    assert metrics["AP75"] == pytest.approx(0.0)
    if ap is not None:
        assert metrics["AP"] == pytest.approx(ap)


def test_wrong_class_gives_0():
    gt = make_gt([(1, 3, box_mask(5, 5, 20, 20))])
    metrics = coco_mask_ap(gt, [result(1, 7, box_mask(5, 5, 20, 20))])
    assert metrics["AP"] == 0.0 and metrics["AP50"] == 0.0


def test_empty_results_give_0():
    metrics = coco_mask_ap(make_gt(GT_INSTANCES), [])
    assert metrics["AP"] == 0.0 and metrics["AP50"] == 0.0 and metrics["APs"] == 0.0
    assert math.isnan(metrics["APl"])


def test_image_ids_restrict_the_evaluation():
    gt = make_gt(GT_INSTANCES)
    only_image_1 = [result(i, c, m) for i, c, m in GT_INSTANCES if i == 1]
    # cat: 1 of 2 found, precision 1 at the 51 recall thresholds 0.00..0.50 of 101 -> 51/101; dog: 1
    assert coco_mask_ap(gt, only_image_1)["AP"] == pytest.approx((51 / 101 + 1) / 2 * 100)
    assert coco_mask_ap(gt, only_image_1, image_ids=[1])["AP"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="99"):
        coco_mask_ap(gt, only_image_1, image_ids=[99])
    with pytest.raises(ValueError, match="99"):
        coco_mask_ap(gt, [result(99, 3, box_mask(0, 0, 4, 4))])


def test_area_scale_moves_an_instance_between_size_buckets():
    mask = box_mask(0, 0, 20, 20)  # 400 px
    gt, res = make_gt([(1, 3, mask)]), [result(1, 3, mask)]
    coco = coco_mask_ap(gt, res)                   # limits 1024 / 9216: small
    assert coco["APs"] == pytest.approx(100.0) and math.isnan(coco["APm"])
    scaled = coco_mask_ap(gt, res, area_scale=0.25)  # limits 256 / 2304: medium
    assert math.isnan(scaled["APs"]) and scaled["APm"] == pytest.approx(100.0)
    tiny = coco_mask_ap(gt, res, area_scale=0.04)    # limits 40.96 / 368.64: large
    assert tiny["APl"] == pytest.approx(100.0) and math.isnan(tiny["APm"])


def test_quiet_unless_verbose(capsys):
    gt = make_gt(GT_INSTANCES)
    coco_mask_ap(gt, [result(1, 3, GT_INSTANCES[0][2])])
    assert capsys.readouterr().out == ""
    coco_mask_ap(gt, [result(1, 3, GT_INSTANCES[0][2])], verbose=True)
    assert "Average Precision" in capsys.readouterr().out


def test_gt_from_json_file(tmp_path):
    import json

    path = tmp_path / "gt.json"
    path.write_text(json.dumps(make_gt(GT_INSTANCES)))
    assert coco_mask_ap(path, [result(i, c, m) for i, c, m in GT_INSTANCES])["AP"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="missing.json"):
        coco_mask_ap(tmp_path / "missing.json", [])


def logit(p):
    p = torch.as_tensor(p, dtype=torch.float64)
    return torch.log(p / (1 - p)).float()


def hand_worked_outputs():
    # softmax(log p) = p, so the class probabilities are exactly these rows (N = 2, last = no-object)
    class_logits = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.05, 0.05, 0.9]]).log()
    mask_logits = torch.stack([
        logit([[0.8, 0.6], [0.2, 0.4]]),   # mask [[1, 1], [0, 0]], m = (0.8 + 0.6) / 2 = 0.7
        logit([[0.9, 0.3], [0.3, 0.3]]),   # mask [[1, 0], [0, 0]], m = 0.9
        logit([[0.1, 0.1], [0.1, 0.1]]),   # empty mask, m = 0
    ])
    return class_logits, mask_logits


def test_instance_inference_top_k_over_query_class_pairs():
    class_logits, mask_logits = hand_worked_outputs()
    scores, labels, masks = instance_inference(class_logits, mask_logits, top_k=3)
    # top 3 (query, class) pairs by class prob: (0,0) 0.7, (1,1) 0.6, (0,1) 0.2 -- query 0 twice.
    # scores c*m: 0.7*0.7 = 0.49, 0.6*0.9 = 0.54, 0.2*0.7 = 0.14; returned by descending score.
    assert scores.tolist() == pytest.approx([0.54, 0.49, 0.14], abs=1e-6)
    assert labels.tolist() == [1, 0, 1]
    assert masks.dtype == torch.bool
    assert masks.tolist() == [[[True, False], [False, False]], [[True, True], [False, False]],
                              [[True, True], [False, False]]]


def test_instance_inference_k_is_capped_at_q_times_n():
    class_logits, mask_logits = hand_worked_outputs()
    scores, labels, masks = instance_inference(class_logits, mask_logits, top_k=100)
    assert len(scores) == len(labels) == len(masks) == 6
    assert scores[-2:].tolist() == [0.0, 0.0]  # query 2's empty mask has m = 0
    with pytest.raises(ValueError):
        instance_inference(class_logits, mask_logits[:2])


def test_predictions_to_coco_round_trip():
    categories = Categories.from_coco(CATS)
    masks = torch.from_numpy(np.stack([box_mask(5, 5, 20, 10), box_mask(0, 0, 0, 0)]))
    out = predictions_to_coco(4, torch.tensor([0.8, 0.1]), torch.tensor([1, 0]), masks, categories)
    assert [r["category_id"] for r in out] == [7, 3]
    first = out[0]
    assert first["image_id"] == 4 and first["score"] == pytest.approx(0.8)
    assert isinstance(first["segmentation"]["counts"], str)
    assert first["area"] == 200 and first["bbox"] == [5.0, 5.0, 20.0, 10.0]
    decoded = mask_utils.decode({"size": first["segmentation"]["size"],
                                 "counts": first["segmentation"]["counts"].encode()})
    assert (decoded.astype(bool) == masks[0].numpy()).all()
    assert out[1]["area"] == 0
    with pytest.raises(ValueError, match="class index 2"):
        predictions_to_coco(4, torch.tensor([0.5]), torch.tensor([2]), masks[:1], categories)


def perfect_logits(instances, image_id, q=4):
    """Query outputs that predict image_id's GT exactly (remaining queries: no-object)."""
    mine = [(c, m) for i, c, m in instances if i == image_id]
    class_logits = torch.full((q, 3), -10.0)
    class_logits[:, 2] = 10.0
    mask_logits = torch.full((q, H, W), -10.0)
    for k, (c, m) in enumerate(mine):
        class_logits[k] = torch.tensor([-10.0, -10.0, -10.0])
        class_logits[k, [3, 7].index(c)] = 10.0
        mask_logits[k][torch.from_numpy(m)] = 10.0
    return class_logits, mask_logits


def test_coco_evaluator_end_to_end():
    evaluator = CocoEvaluator(make_gt(GT_INSTANCES))
    evaluator.add(1, *perfect_logits(GT_INSTANCES, 1))
    assert evaluator.compute()["AP"] == pytest.approx(100.0)  # only image 1 was added
    evaluator.add(2, *perfect_logits(GT_INSTANCES, 1))  # image 1's masks on image 2: wrong
    assert evaluator.compute()["AP"] < 100.0
    with pytest.raises(ValueError, match="image 2"):
        evaluator.add(2, *perfect_logits(GT_INSTANCES, 2))
    evaluator.reset()
    evaluator.add(2, *perfect_logits(GT_INSTANCES, 2))
    evaluator.add(1, *perfect_logits(GT_INSTANCES, 1))
    assert evaluator.compute()["AP"] == pytest.approx(100.0)


def _two_rank_worker(rank, init_file, out_dir):
    import json

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        evaluator = CocoEvaluator(make_gt(GT_INSTANCES))
        # rank 0 has image 1, rank 1 has image 2 and a padded repeat of image 1 with wrong masks,
        # which must not count (the lowest rank's predictions of a repeated image win)
        if rank == 0:
            evaluator.add(1, *perfect_logits(GT_INSTANCES, 1))
        else:
            evaluator.add(2, *perfect_logits(GT_INSTANCES, 2))
            evaluator.add(1, *perfect_logits(GT_INSTANCES, 2))
        (out_dir / f"rank{rank}.json").write_text(json.dumps(evaluator.compute()))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_coco_evaluator_gathers_across_two_ranks(tmp_path):
    import json

    import torch.multiprocessing as mp

    mp.spawn(_two_rank_worker, args=(str(tmp_path / "init"), tmp_path), nprocs=2, join=True)
    assert json.loads((tmp_path / "rank0.json").read_text())["AP"] == pytest.approx(100.0)
    assert json.loads((tmp_path / "rank1.json").read_text()) == {}



def test_per_class_ap_averages_to_ap_and_names_each_class():
    gt = make_gt(GT_INSTANCES)
    # cat: both instances found; dog: its mask shifted to IoU 0.625 (matched at 3 of 10 thresholds)
    dog_shifted = box_mask(30 + 3, 30, 30, 25)
    res = [result(1, 3, GT_INSTANCES[0][2]), result(2, 3, GT_INSTANCES[2][2]), result(1, 7, dog_shifted)]
    metrics = coco_mask_ap(gt, res, per_class=True)
    per = metrics["AP_per_class"]
    assert set(per) == {"cat", "dog"}
    assert per["cat"] == pytest.approx(100.0)
    assert 0 < per["dog"] < 100
    assert metrics["AP"] == pytest.approx((per["cat"] + per["dog"]) / 2)
    assert "AP_per_class" not in coco_mask_ap(gt, res)


def test_per_class_ap_is_nan_for_a_class_without_ground_truth():
    gt = make_gt([(1, 3, box_mask(5, 5, 20, 20))])
    per = coco_mask_ap(gt, [result(1, 3, box_mask(5, 5, 20, 20))], per_class=True)["AP_per_class"]
    assert per["cat"] == pytest.approx(100.0) and math.isnan(per["dog"])
    assert math.isnan(coco_mask_ap(gt, [], image_ids=[], per_class=True)["AP_per_class"]["cat"])
