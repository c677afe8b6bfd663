import copy
import json
import logging
import pickle
import re

import numpy as np
import pytest
import torch
from PIL import Image

from pldc_core.data.coco import (DatasetError, ImageList, annotation_mask, load_coco, mask_to_rle,
                                 read_image_ids, validate_coco)
from pldc_core.data.registry import get_dataset, list_datasets


def _box(x0, y0, x1, y1):
    # COCO polygon coordinates are pixel edges: this box covers (x1 - x0) * (y1 - y0) pixels.
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _base():
    return {
        "images": [{"id": 1, "file_name": "a.png", "height": 10, "width": 12},
                   {"id": 2, "file_name": "sub/b.png", "height": 4, "width": 5}],
        "categories": [{"id": 7, "name": "car", "supercategory": "vehicle"},
                       {"id": 3, "name": "person", "supercategory": "human"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 7, "segmentation": _box(2, 1, 6, 4), "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 3, "segmentation": _box(0, 0, 12, 10), "iscrowd": 1},
            # uncompressed RLE, column-major: pixels (row 1, col 1) and (row 2, col 1) of a 4x5 image
            {"id": 12, "image_id": 2, "category_id": 3, "segmentation": {"size": [4, 5], "counts": [5, 2, 13]},
             "iscrowd": 0},
        ],
    }


def _write(tmp_path, data, images=True):
    root = tmp_path / "images"
    if images:
        (root / "sub").mkdir(parents=True, exist_ok=True)
        a = np.zeros((10, 12, 3), dtype=np.uint8)
        a[0, 0] = (255, 0, 0)
        Image.fromarray(a).save(root / "a.png")
        Image.fromarray(np.full((4, 5, 3), 51, dtype=np.uint8)).save(root / "sub" / "b.png")
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path, root


def test_loads_valid_dataset(tmp_path):
    path, root = _write(tmp_path, _base())
    index = load_coco(path, root)
    assert index.image_ids == [1, 2]
    assert index.categories.ids == [3, 7]  # sorted by id: person -> class 0, car -> class 1
    assert index.image_info(2) == {"id": 2, "file_name": "sub/b.png", "height": 4, "width": 5}
    assert index.image_path(2) == root / "sub" / "b.png"

    image = index.load_image(1)
    assert image.dtype == torch.float32 and image.shape == (3, 10, 12)
    assert image[:, 0, 0].tolist() == [1.0, 0.0, 0.0] and image[:, 1, 1].tolist() == [0.0, 0.0, 0.0]
    assert torch.allclose(index.load_image(2), torch.full((3, 4, 5), 51 / 255))

    masks, labels, ann_ids = index.instances(1)  # the crowd annotation is left out
    assert masks.dtype == torch.bool and masks.shape == (1, 10, 12)
    assert labels.tolist() == [1] and ann_ids.tolist() == [10]
    expected = torch.zeros(10, 12, dtype=torch.bool)
    expected[1:4, 2:6] = True
    assert torch.equal(masks[0], expected)
    assert index.area(10) == 12
    assert [a["id"] for a in index.annotations(1)] == [10, 11]

    masks, labels, _ = index.instances(2)
    assert labels.tolist() == [0]
    assert torch.nonzero(masks[0]).tolist() == [[1, 1], [2, 1]]

    for image_id in (1, 2):  # the same instances as RLEs, never decoded (records' ground truth)
        masks, labels, ann_ids = index.instances(image_id)
        rles, rle_labels, rle_ids = index.instance_rles(image_id)
        assert all(isinstance(r["counts"], str) for r in rles)
        decoded = np.stack([annotation_mask(r, *masks.shape[1:]) for r in rles])
        np.testing.assert_array_equal(decoded, masks.numpy())
        assert rle_labels.tolist() == labels.tolist() and rle_ids.tolist() == ann_ids.tolist()


def test_malformed_json_names_file_and_position(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"images": [}\n')
    with pytest.raises(DatasetError, match=r"bad\.json: malformed JSON at line 1, column 13"):
        load_coco(path, tmp_path)


def test_missing_top_level_key(tmp_path):
    data = _base()
    del data["annotations"]
    path, root = _write(tmp_path, data)
    with pytest.raises(DatasetError, match=r"ann\.json: missing top-level key 'annotations'"):
        load_coco(path, root)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["images"].append(dict(d["images"][0])), r"image id 1 appears more than once"),
    (lambda d: d["annotations"].append(dict(d["annotations"][0])), r"annotation id 10 appears more than once"),
    (lambda d: d["categories"].append({"id": 7, "name": "bus"}), r"category id 7 appears more than once"),
    (lambda d: d["annotations"][0].update(image_id=99), r"annotation id 10: image_id 99 is not in 'images'"),
    (lambda d: d["annotations"][0].update(category_id=5),
     r"annotation id 10 \(image id 1\): category_id 5 is not in 'categories'"),
    (lambda d: d["annotations"][0].update(segmentation=[[1, "x", 3, 4, 5, 6]]), r"annotation id 10 .*not a list of numbers"),
    (lambda d: d["annotations"][2].update(segmentation={"size": [4, 5], "counts": 17}),
     r"annotation id 12 .*neither a string nor a list"),
    (lambda d: d["images"][1].pop("height"), r"images\[1\] \(id 2\) is missing key\(s\) \['height'\]"),
])
def test_structural_errors_are_fatal_even_when_lenient(tmp_path, mutate, message):
    data = _base()
    mutate(data)
    path, root = _write(tmp_path, data)
    for strict in (True, False):
        with pytest.raises(DatasetError, match=message) as info:
            load_coco(path, root, strict=strict)
        assert "ann.json" in str(info.value)


@pytest.mark.parametrize("segmentation, kind, message", [
    ([], "empty_segmentation", r"annotation id 10 \(image id 1\): segmentation is an empty polygon list"),
    ([[1, 1, 5, 5]], "degenerate_polygon", r"annotation id 10 .*fewer than 3 points"),
    (_box(3, 3, 3, 8), "zero_area", r"annotation id 10 .*zero area"),  # a box of width 0
    (_box(20, 20, 30, 30), "zero_area", r"annotation id 10 .*zero area"),  # entirely outside the image
    ({"size": [10, 12], "counts": [5, 2, 3]}, "malformed_rle", r"annotation id 10 .*do not add up to 10x12"),
    ({"size": [10, 12], "counts": "0R1"}, "malformed_rle", r"annotation id 10 .*do not add up"),
    ({"size": [4, 4], "counts": [16]}, "malformed_rle", r"annotation id 10 .*differs from the image size"),
])
def test_bad_geometry_is_an_error_or_a_counted_skip(tmp_path, caplog, segmentation, kind, message):
    data = _base()
    data["annotations"][0]["segmentation"] = segmentation
    path, root = _write(tmp_path, data)
    with pytest.raises(DatasetError, match=message):
        load_coco(path, root)
    problems, _ = validate_coco(json.loads(path.read_text()), root)
    assert [p.kind for p in problems] == [kind] and problems[0].ann_id == 10 and problems[0].skippable

    with caplog.at_level(logging.WARNING):
        index = load_coco(path, root, strict=False)
    assert [a["id"] for a in index.annotations(1)] == [11]
    warning = "\n".join(r.getMessage() for r in caplog.records)
    assert f"skipped 1 annotation(s) ({kind})" in warning and "annotation id 10" in warning


def test_warning_counts_every_skipped_annotation(tmp_path, caplog):
    data = _base()
    for i in range(5):
        data["annotations"].append({"id": 100 + i, "image_id": 1, "category_id": 7, "segmentation": []})
    path, root = _write(tmp_path, data)
    with caplog.at_level(logging.WARNING):
        index = load_coco(path, root, strict=False)
    assert len(index.annotations(1)) == 2
    (record,) = caplog.records
    assert "skipped 5 annotation(s) (empty_segmentation)" in record.getMessage()
    assert "annotation id 100" in record.getMessage() and "; ..." in record.getMessage()


def test_compressed_rle_round_trip_and_validation(tmp_path):
    mask = np.zeros((10, 12), dtype=bool)
    mask[4:9, 1:3] = True
    mask[0, 11] = True
    data = _base()
    data["annotations"][0]["segmentation"] = mask_to_rle(mask)
    path, root = _write(tmp_path, data)
    index = load_coco(path, root)
    assert index.area(10) == 11
    assert np.array_equal(index.instances(1)[0][0].numpy(), mask)
    assert np.array_equal(annotation_mask(mask_to_rle(mask), 10, 12), mask)


def test_missing_image_file(tmp_path, caplog):
    path, root = _write(tmp_path, _base())
    (root / "sub" / "b.png").unlink()
    with pytest.raises(DatasetError, match=r"image id 2: file .*sub/b\.png does not exist"):
        load_coco(path, root)
    with caplog.at_level(logging.WARNING):
        index = load_coco(path, root, strict=False)
    assert index.image_ids == [1]
    assert "skipped 1 image(s) and their annotations (missing_image)" in caplog.records[0].getMessage()


def test_missing_annotation_file(tmp_path):
    with pytest.raises(DatasetError, match=r"nope\.json: annotation file not found"):
        load_coco(tmp_path / "nope.json", tmp_path)


def test_corrupt_or_wrong_size_image_raises_on_load(tmp_path):
    path, root = _write(tmp_path, _base())
    (root / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    index = load_coco(path, root)
    with pytest.raises(DatasetError, match=r"a\.png: image id 1: cannot read image"):
        index.load_image(1)
    Image.fromarray(np.zeros((5, 5, 3), dtype=np.uint8)).save(root / "a.png")
    with pytest.raises(DatasetError, match=r"a\.png: image id 1: file is 5x5 but the annotations say 10x12"):
        index.load_image(1)


def test_validate_lists_every_problem(tmp_path):
    data = _base()
    data["annotations"][0]["category_id"] = 5
    data["annotations"][2]["segmentation"] = []
    data["images"].append({"id": 3, "file_name": "gone.png", "height": 2, "width": 2})
    path, root = _write(tmp_path, data)
    problems, areas = validate_coco(json.loads(path.read_text()), root)
    assert sorted((p.kind, p.ann_id if p.ann_id is not None else p.image_id) for p in problems) == [
        ("empty_segmentation", 12), ("missing_image", 3), ("unknown_category_id", 10)]
    assert areas == {11: 120}


def test_images_only_holds_no_annotations(tmp_path):
    data = _base()
    data["annotations"][0]["segmentation"] = mask_to_rle(np.eye(10, 12, dtype=bool))
    path, root = _write(tmp_path, data)
    index = load_coco(path, root)
    images = index.images_only([2])
    assert isinstance(images, ImageList) and images.image_ids == [2] and len(images) == 1
    assert not hasattr(images, "annotations") and not hasattr(images, "instances")
    assert torch.equal(images.load_image(2), index.load_image(2))
    state = pickle.dumps(images)
    for leaked in (b"counts", b"segmentation", b"person", b"category", data["annotations"][0]["segmentation"]["counts"].encode()):
        assert leaked not in state
    with pytest.raises(KeyError, match="image id 1 is not in this image list"):
        images.load_image(1)


def test_image_list_from_folder(tmp_path):
    _write(tmp_path, _base())
    images = ImageList.from_folder(tmp_path / "images")
    assert [images.image_info(i)["file_name"] for i in images.image_ids] == ["a.png", "sub/b.png"]
    assert images.load_image(2).shape == (3, 4, 5)


def test_read_image_ids(tmp_path):
    data = _base()
    path, _ = _write(tmp_path, data, images=False)
    assert read_image_ids(path) == [1, 2]
    dup = copy.deepcopy(data)
    dup["images"][1]["id"] = 1
    path.write_text(json.dumps(dup))
    with pytest.raises(DatasetError, match="image id 1 appears more than once"):
        read_image_ids(path)


def test_builtin_datasets_live_under_the_data_root(tmp_path):
    syn = get_dataset("synthetic", data_root=tmp_path)
    assert syn.train_json == tmp_path / "synthetic" / "annotations" / "instances_train.json"
    assert syn.image_root_val == tmp_path / "synthetic" / "val"
    coco = get_dataset("coco2017", data_root=tmp_path)
    assert coco.image_root_train == tmp_path / "coco" / "train2017"
    assert coco.val_json == tmp_path / "coco" / "annotations" / "instances_val2017.json"
    city = get_dataset("cityscapes", data_root=tmp_path)
    assert city.train_json == tmp_path / "cityscapes" / "annotations" / "instancesonly_filtered_gtFine_train.json"
    with pytest.raises(DatasetError, match=r"instances_train2017\.json: annotation file not found"):
        coco.load_train()


def test_registered_dataset(tmp_path):
    path, root = _write(tmp_path, _base())
    registry = tmp_path / "datasets.yaml"
    registry.write_text("datasets:\n  toy:\n    train_json: ann.json\n    train_images: images\n")
    spec = get_dataset("toy", data_root=tmp_path)  # DATA_ROOT/datasets.yaml is read by default
    assert spec.train_json == path and spec.image_root_train == root and spec.val_json is None
    assert spec.load_train().image_ids == [1, 2]
    with pytest.raises(DatasetError, match="dataset 'toy' has no validation set"):
        spec.load_val()
    assert list_datasets(tmp_path) == ["synthetic", "upstream", "coco2017", "cityscapes", "coco2017-unlabeled", "toy"]
    with pytest.raises(DatasetError, match=r"unknown dataset 'toys'; known: synthetic, upstream, coco2017, cityscapes, coco2017-unlabeled, toy"):
        get_dataset("toys", data_root=tmp_path)


@pytest.mark.parametrize("text, message", [
    ("datasets:\n  toy:\n    train_json: a.json\n", r"other\.yaml: dataset 'toy' is missing 'train_images'"),
    ("datasets:\n  coco2017:\n    train_json: a\n    train_images: b\n", r"would shadow the built-in"),
    ("datasets:\n  toy: {train_json: a, train_images: b, val_json: c}\n", r"give both val_json and val_images"),
    ("datasets:\n  toy: {train_json: a, train_images: b, test: c}\n", r"unknown key\(s\) \['test'\]"),
    ("datasets: [\n", r"other\.yaml: malformed YAML at line 2"),
    ("toy: {}\n", r"needs a top-level mapping 'datasets"),
])
def test_bad_registry_files(tmp_path, text, message):
    registry = tmp_path / "other.yaml"
    registry.write_text(text)
    with pytest.raises(DatasetError, match=message):
        get_dataset("toy", registry_file=registry)
    with pytest.raises(DatasetError, match=r"missing\.yaml: dataset registry file not found"):
        get_dataset("toy", registry_file=tmp_path / "missing.yaml")


def test_training_skips_degenerate_annotations_with_one_warning(tmp_path, caplog):
    """COCO train2017 has annotations like these; training must not stop on them."""
    from pldc_core.config import from_dict
    from pldc_core.data.splits import write_splits
    from pldc_core.training.data import build_data

    data = _base()
    data["annotations"] += [
        # a collinear polygon: 3 points on a line, zero area
        {"id": 20, "image_id": 1, "category_id": 7, "segmentation": [[1, 1, 3, 3, 5, 5]], "iscrowd": 0},
        # an all-zero RLE
        {"id": 21, "image_id": 1, "category_id": 7, "segmentation": {"size": [10, 12], "counts": [120]}},
        # a fine mask whose box has zero width
        {"id": 22, "image_id": 1, "category_id": 7, "segmentation": _box(2, 1, 6, 4), "bbox": [2, 1, 0, 3]},
    ]
    path, root = _write(tmp_path, data)
    with pytest.raises(DatasetError, match="annotation id 20 .*zero area"):
        load_coco(path, root)  # strict loading (and `pldc data validate`) still refuses them
    problems, _ = validate_coco(json.loads(path.read_text()), root)
    assert [(p.kind, p.ann_id) for p in problems] == [("zero_area", 20), ("zero_area", 21), ("zero_size_box", 22)]

    (tmp_path / "datasets.yaml").write_text("datasets:\n  toy: {train_json: ann.json, train_images: images, "
                                            "val_json: ann.json, val_images: images}\n")
    write_splits(tmp_path / "split.json", read_image_ids(path), [50], [0], dataset="toy")
    cfg = from_dict({"data": {"dataset": "toy", "data_root": str(tmp_path), "percent": 50,
                              "split_file": str(tmp_path / "split.json")}})
    with caplog.at_level(logging.WARNING):
        bundle = build_data(cfg)
    assert [a["id"] for a in bundle.train_index.annotations(1)] == [10, 11]
    train_warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()][:1]
    assert len(train_warnings) == 1
    assert "skipped 3 annotation(s) with no usable geometry (zero_area: 2, zero_size_box: 1)" in train_warnings[0]
    assert "first ids: 20, 21, 22" in train_warnings[0]


def test_each_dataset_says_how_it_is_evaluated(tmp_path):
    from pldc_core.config import DataConfig
    from pldc_core.data.registry import eval_protocol

    auto = DataConfig()
    assert eval_protocol(auto, get_dataset("coco2017", data_root=tmp_path)) == ("absolute", (800, 1333))
    assert eval_protocol(auto, get_dataset("cityscapes", data_root=tmp_path)) == ("absolute", "full")
    assert eval_protocol(auto, get_dataset("synthetic", data_root=tmp_path)) == ("rescaled", "train")
    chosen = DataConfig(size_buckets="rescaled", test_size=[600, 1000])
    assert eval_protocol(chosen, get_dataset("coco2017", data_root=tmp_path)) == ("rescaled", (600, 1000))
    (tmp_path / "datasets.yaml").write_text("datasets:\n  toy: {train_json: a.json, train_images: i, "
                                            "size_buckets: rescaled, test_size: full}\n")
    assert eval_protocol(auto, get_dataset("toy", data_root=tmp_path)) == ("rescaled", "full")


def test_all_labeled_plus_an_extra_unlabeled_set(tmp_path):
    """The paper's 100% setting: every train image labeled, unlabeled images from another file."""
    from pldc_core.config import from_dict
    from pldc_core.data.splits import write_splits
    from pldc_core.training.data import build_data

    path, root = _write(tmp_path, _base())
    extra_root = tmp_path / "unlabeled"
    extra_root.mkdir()
    Image.fromarray(np.full((6, 7, 3), 200, dtype=np.uint8)).save(extra_root / "u.png")
    # like COCO's image_info_unlabeled2017.json: images, no annotations
    (tmp_path / "extra.json").write_text(json.dumps({"images": [{"id": 50, "file_name": "u.png", "height": 6,
                                                                 "width": 7}], "categories": []}))
    (tmp_path / "datasets.yaml").write_text(
        "datasets:\n  toy: {train_json: ann.json, train_images: images, val_json: ann.json, val_images: images}\n"
        "  toy-unlabeled: {train_json: extra.json, train_images: unlabeled}\n")
    write_splits(tmp_path / "split.json", read_image_ids(path), [100], [0], dataset="toy")
    cfg = from_dict({"data": {"dataset": "toy", "data_root": str(tmp_path), "percent": 100, "image_size": 32,
                              "split_file": str(tmp_path / "split.json"), "extra_unlabeled": "toy-unlabeled"}})
    bundle = build_data(cfg)
    assert bundle.labeled_ids == [1, 2] and bundle.unlabeled_ids == []
    assert bundle.unlabeled.image_ids == [50]
    pair = bundle.unlabeled[0]
    assert pair.image_id == 50 and pair.weak.meta["orig_size"] == (6, 7)
    (tmp_path / "extra.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "u.png", "height": 6,
                                                                 "width": 7}]}))
    cfg = from_dict({"data": {**cfg.to_dict()["data"], "percent": 50}})
    write_splits(tmp_path / "split.json", read_image_ids(path), [50], [0], dataset="toy")
    with pytest.raises(DatasetError, match=r"unlabeled: image id \d is also in"):
        build_data(cfg)


@pytest.mark.parametrize("mutate, kind, message", [
    (lambda a: a.update(segmentation=[[float("nan"), 1, 5, 1, 5, 4]]), "malformed_polygon",
     "polygon has a coordinate that is not a finite number"),
    (lambda a: a.update(segmentation=[[2, 1, float("inf"), 1, 5, 4]]), "malformed_polygon",
     "polygon has a coordinate that is not a finite number"),
    # pycocotools would rasterise this edge pixel by pixel and exhaust the memory
    (lambda a: a.update(segmentation=[[2, 1, 1e12, 1, 5, 4]]), "polygon_outside_image",
     "polygon point (1e+12, 1) lies far outside the image (width 12, height 10)"),
    # evaluation reads a ground truth's size bucket from 'area': a negative one would drop it silently
    (lambda a: a.update(area=-3), "bad_area", "'area' must be a number >= 0, got -3"),
    (lambda a: a.update(area=float("nan")), "bad_area", "'area' must be a number >= 0, got nan"),
])
def test_nan_negative_and_far_out_numbers_are_reported(tmp_path, mutate, kind, message):
    from tests.cli_checks import run_pldc

    data = _base()
    mutate(data["annotations"][0])
    path, root = _write(tmp_path, data)
    # in a process of its own with limited memory: before these checks, NaN or far-out points took > 20 GB
    proc = run_pldc("data", "validate", "--json", path, "--images", root)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{kind}: 1 (one entry), first ids: 10 — e.g. annotation id 10 (image id 1): {message}" in proc.stdout
    assert proc.stdout.startswith(f"{path}: 2 images, 3 annotations")
    if kind == "bad_area":  # safe in this process: training's loader refuses the file, naming it
        with pytest.raises(DatasetError, match=re.escape(f"{path}: annotation id 10 (image id 1): {message}")):
            load_coco(path, root)


def test_points_a_little_outside_the_image_are_clipped_not_refused(tmp_path):
    data = _base()
    data["annotations"][0]["segmentation"] = [[-3, -2, 15, -2, 15, 4, -3, 4]]  # the whole top band
    path, root = _write(tmp_path, data)
    assert load_coco(path, root).area(10) == 12 * 4
