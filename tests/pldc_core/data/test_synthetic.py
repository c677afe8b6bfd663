import hashlib
import inspect
import json

import numpy as np
import pytest
from PIL import Image

from apps.cli import main
from pldc_core.data.coco import DatasetError, annotation_mask, load_coco, mask_to_rle
from pldc_core.data.splits import load_split
from pldc_core.data.synthetic import (LOOKALIKE_PAIRS, SYNTHETIC_CLASSES, dataset_stats, generate_synthetic,
                                      render_preview)
from pldc_core.structures import size_category


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "synthetic"
    info = generate_synthetic(out, n_train=160, n_val=8, seed=3, workers=2, progress=False)
    index = load_coco(out / "annotations" / "instances_train.json", out / "train")
    return out, info, index, dataset_stats(index)


def test_categories_and_long_tail(generated):
    _, _, index, stats = generated
    assert stats["num_categories"] >= 8 and len(stats["supercategories"]) >= 3
    assert [c.supercategory for c in index.categories.items] == [c.supercategory for c in SYNTHETIC_CLASSES]
    assert stats["commonest"][1] >= 0.30
    assert stats["rarest"][1] <= 0.03 and stats["rarest"][1] > 0
    assert sum(stats["class_counts"].values()) == stats["num_instances"]


def test_lookalike_pairs_are_measured_in_the_images(generated):
    stats = generated[3]
    found = {tuple(sorted(p["classes"])) for p in stats["lookalike_pairs"]}
    assert len(found) >= 2 and found == set(LOOKALIKE_PAIRS)
    assert all(p["same_supercategory"] and p["iou"] >= 0.85 for p in stats["lookalike_pairs"])
    # and each pairs a common class with a rarer one
    shares = stats["class_shares"]
    assert all(max(shares[a], shares[b]) >= 2 * min(shares[a], shares[b]) for a, b in found)


def test_overlap_sizes_and_crowding(generated):
    stats = generated[3]
    assert stats["overlap_fraction"] >= 0.30
    assert all(stats["size_fractions"][k] >= 0.10 for k in ("small", "medium", "large"))
    assert stats["instances_per_image"]["min"] >= 2 and stats["instances_per_image"]["mean"] >= 3


def test_coco_fields(generated):
    out, info, index, _ = generated
    coco = json.loads((out / "annotations" / "instances_train.json").read_text())
    assert all(set(c) == {"id", "name", "supercategory"} for c in coco["categories"])
    assert info["train"]["instances"] == len(coco["annotations"])
    for ann in coco["annotations"][:200]:
        img = index.image_info(ann["image_id"])
        mask = annotation_mask(ann["segmentation"], img["height"], img["width"])
        ys, xs = np.nonzero(mask)
        assert ann["iscrowd"] == 0 and isinstance(ann["segmentation"]["counts"], str)
        assert ann["area"] == mask.sum() > 0
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    for image_id in index.image_ids[:10]:
        info = index.image_info(image_id)
        assert 128 <= info["height"] <= 160 and 128 <= info["width"] <= 160
        with Image.open(index.image_path(image_id)) as im:
            assert im.size == (info["width"], info["height"]) and im.mode == "RGB"


def test_masks_of_one_image_do_not_overlap(generated):
    index = generated[2]
    for image_id in index.image_ids[:20]:
        masks, _, _ = index.instances(image_id)
        assert masks.sum(0).max() <= 1  # occlusion is resolved: each pixel belongs to at most one instance


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    a = generate_synthetic(tmp_path / "a", n_train=6, n_val=3, seed=5, workers=1, progress=False)
    b = generate_synthetic(tmp_path / "b", n_train=6, n_val=3, seed=5, workers=2, progress=False)
    c = generate_synthetic(tmp_path / "c", n_train=6, n_val=3, seed=6, workers=2, progress=False)
    assert a["workers"] == 1 and b["workers"] == 2
    digest_a = _digest(tmp_path / "a")
    assert len(digest_a) == 6 + 3 + 2 + 1
    assert digest_a == _digest(tmp_path / "b")
    assert digest_a["train/000001.png"] != _digest(tmp_path / "c")["train/000001.png"]


def test_counts_are_honoured_and_defaults_are_the_benchmark(tmp_path):
    defaults = inspect.signature(generate_synthetic).parameters
    assert (defaults["n_train"].default, defaults["n_val"].default) == (2000, 500)
    assert (defaults["min_size"].default, defaults["max_size"].default) == (128, 160)
    info = generate_synthetic(tmp_path / "s", n_train=7, n_val=4, workers=1, progress=False)
    assert info["train"]["images"] == 7 and info["val"]["images"] == 4
    for split, n in (("train", 7), ("val", 4)):
        coco = json.loads((tmp_path / "s" / "annotations" / f"instances_{split}.json").read_text())
        assert [img["id"] for img in coco["images"]] == list(range(1, n + 1))
        assert len(list((tmp_path / "s" / split).glob("*.png"))) == n


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(DatasetError, match="was not made by make-synthetic"):
        generate_synthetic(tmp_path / "mine", n_train=2, n_val=1, workers=1, progress=False)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
    generate_synthetic(tmp_path / "ours", n_train=2, n_val=1, workers=1, progress=False)
    generate_synthetic(tmp_path / "ours", n_train=3, n_val=1, workers=1, progress=False)  # ours: replaced whole
    assert len(list((tmp_path / "ours" / "train").glob("*.png"))) == 3


def _tiny_index(tmp_path):
    """Two 40x60 images. Image 1: a 10x10 square touching a 4x4 one, plus a 30x30 square apart;
    image 2: two 3x3 squares far apart."""
    boxes = {1: [(0, 0, 10, 10), (10, 0, 4, 4), (25, 5, 30, 30)], 2: [(0, 0, 3, 3), (30, 30, 3, 3)]}
    images, annotations = [], []
    for image_id, rects in boxes.items():
        Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8)).save(tmp_path / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": 40, "width": 60})
        for k, (x, y, w, h) in enumerate(rects):
            mask = np.zeros((40, 60), dtype=bool)
            mask[y:y + h, x:x + w] = True
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1 + k % 2,
                                "segmentation": mask_to_rle(mask), "iscrowd": 0})
    categories = [{"id": 1, "name": "a", "supercategory": "s"}, {"id": 2, "name": "b", "supercategory": "t"}]
    (tmp_path / "ann.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                   "categories": categories}))
    return load_coco(tmp_path / "ann.json", tmp_path)


def test_dataset_stats_on_hand_made_data(tmp_path):
    stats = dataset_stats(_tiny_index(tmp_path))
    # instances by category: image 1 -> a, b, a; image 2 -> a, b
    assert stats["class_counts"] == {"a": 3, "b": 2}
    assert stats["commonest"] == ["a", 0.6] and stats["rarest"] == ["b", 0.4]
    assert stats["instances_per_image"] == {"mean": 2.5, "min": 2, "max": 3}
    assert stats["overlap_fraction"] == 0.5  # only image 1 has touching masks
    # 40x60 px: limits 32^2 * 2400/307200 = 8 and 96^2 * 2400/307200 = 72 pixels
    assert size_category(9, 40, 60) == "medium" and size_category(72, 40, 60) == "large"
    assert stats["size_fractions"] == {"small": 0.0, "medium": 3 / 5, "large": 2 / 5}
    assert stats["supercategories"] == {"s": ["a"], "t": ["b"]}


def test_preview_and_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["data", "make-synthetic", "--train", "12", "--val", "4", "--workers", "1",
                 "--percent", "10", "50", "--seeds", "0"]) == 0
    assert "wrote data/synthetic: 12 train / 4 val images" in capsys.readouterr().out
    labeled, unlabeled = load_split("data/splits/synthetic.json", 50, 0)
    assert len(labeled) == 6 and len(unlabeled) == 6

    assert main(["data", "summary", "--split", "val", "--json-out", "stats.json"]) == 0
    printed = capsys.readouterr().out
    assert "synthetic val: 4 images" in printed and "commonest: disk" in printed
    assert json.loads((tmp_path / "stats.json").read_text())["val"]["num_images"] == 4

    assert main(["data", "preview", "--num", "3", "--cols", "2", "--out", "p.png"]) == 0
    with Image.open(tmp_path / "p.png") as im:
        assert im.width > 2 * 2 * 128 and im.height > 2 * 128

    assert main(["data", "validate", "--dataset", "synthetic"]) == 0
    assert "no problems found" in capsys.readouterr().out

    index = load_coco("data/synthetic/annotations/instances_val.json", "data/synthetic/val")
    out = render_preview(index, index.image_ids[:1], tmp_path / "one.png", cols=1, scale=1)
    with Image.open(out) as im:
        info = index.image_info(index.image_ids[0])
        assert im.size == (2 * info["width"] + 4 + 16, info["height"] + 16)


def test_cli_validate_reports_problems(tmp_path, capsys):
    index = _tiny_index(tmp_path)
    coco = json.loads(index.json_path.read_text())
    coco["annotations"][0]["category_id"] = 9
    coco["annotations"][1]["segmentation"] = []
    coco["images"][1]["height"] = 41
    (tmp_path / "bad.json").write_text(json.dumps(coco))
    assert main(["data", "validate", "--json", str(tmp_path / "bad.json"), "--images", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "unknown_category_id: 1 (file structure), first ids: 1" in out
    assert "empty_segmentation: 1 (one entry), first ids: 2" in out
    assert "strict=False" not in out
    assert "5 problem(s): 1 in the file's structure, 4 in single annotations or images" in out
    assert "image id 2:" in out and "is 40x60, the JSON says 41x60" in out


def test_make_synthetic_refuses_a_bad_percent_before_generating(tmp_path, capsys):
    from tests.cli_checks import assert_one_error_line

    out = tmp_path / "data" / "synthetic"
    assert main(["data", "make-synthetic", "--out", str(out), "--train", "4", "--val", "2", "--workers", "1",
                 "--percent", "5", "0"]) == 1
    assert_one_error_line(capsys.readouterr().err, "data make-synthetic", "percent must be in (0, 100], got 0")
    assert not (tmp_path / "data").exists()  # the images were not made only to be left without a split
