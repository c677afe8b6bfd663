import json

import numpy as np
import pytest
from PIL import Image

from apps.cli import main
from pldc_core.data.cityscapes import convert_cityscapes
from pldc_core.data.coco import DatasetError, load_coco


def _rect(x0, y0, x1, y1):
    # Cityscapes polygons are drawn with PIL including their boundary: (x1-x0+1) * (y1-y0+1) pixels.
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def _frame(root, split, city, seq, objects, height=32, width=64):
    stem = f"{city}_{seq}_000019"
    img_dir, gt_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 90, dtype=np.uint8)).save(img_dir / f"{stem}_leftImg8bit.png")
    (gt_dir / f"{stem}_gtFine_polygons.json").write_text(json.dumps(
        {"imgHeight": height, "imgWidth": width, "objects": objects}))
    # files Cityscapes ships next to the polygons, which the converter must ignore
    Image.fromarray(np.zeros((height, width), dtype=np.uint8)).save(gt_dir / f"{stem}_gtFine_labelIds.png")


@pytest.fixture
def sample(tmp_path):
    root = tmp_path / "cityscapes"
    _frame(root, "train", "aachen", "000000", [
        {"label": "road", "polygon": _rect(0, 16, 63, 31)},
        {"label": "car", "polygon": _rect(2, 2, 11, 11)},           # 100 px, then partly hidden by the cargroup
        {"label": "person", "polygon": _rect(20, 2, 23, 11)},       # 40 px, a pole covers its column 23
        {"label": "pole", "polygon": _rect(23, 0, 23, 31)},
        {"label": "cargroup", "polygon": _rect(10, 2, 11, 11)},     # covers 20 px of the car
        {"label": "rider", "polygon": _rect(30, 5, 34, 9)},         # 25 px
        {"label": "bicycle", "polygon": _rect(40, 5, 44, 9), "deleted": 1},
        {"label": "truck", "polygon": _rect(50, 2, 53, 5)},         # fully hidden by the next object
        {"label": "building", "polygon": _rect(48, 0, 60, 8)},
        {"label": "license plate", "polygon": [[1, 1], [2, 2]]},   # fewer than 3 points
    ])
    _frame(root, "train", "bremen", "000001", [
        {"label": "bus", "polygon": _rect(0, 0, 9, 9)},
        {"label": "train", "polygon": _rect(5, 5, 14, 14)},         # in front of the bus: 25 px of it
        {"label": "motorcycle", "polygon": [[30, 10], [40, 10], [35, 20]]},
    ])
    _frame(root, "val", "lindau", "000000", [{"label": "car", "polygon": _rect(0, 0, 3, 3)}])
    return root


def test_converts_thing_instances_with_occlusion(sample, tmp_path):
    out = tmp_path / "train.json"
    stats = convert_cityscapes(sample, "train", out, progress=False)
    coco = json.loads(out.read_text())
    assert [(c["id"], c["name"], c["supercategory"]) for c in coco["categories"]] == [
        (24, "person", "human"), (25, "rider", "human"), (26, "car", "vehicle"), (27, "truck", "vehicle"),
        (28, "bus", "vehicle"), (31, "train", "vehicle"), (32, "motorcycle", "vehicle"), (33, "bicycle", "vehicle")]
    assert coco["images"] == [
        {"id": 1, "file_name": "aachen/aachen_000000_000019_leftImg8bit.png", "height": 32, "width": 64},
        {"id": 2, "file_name": "bremen/bremen_000001_000019_leftImg8bit.png", "height": 32, "width": 64}]
    by_image = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append((ann["category_id"], ann["area"], ann["bbox"], ann["iscrowd"]))
    assert by_image[1] == [(26, 80, [2, 2, 8, 10], 0),    # car minus the cargroup's 2 columns
                           (24, 30, [20, 2, 3, 10], 0),   # person minus the pole's column
                           (25, 25, [30, 5, 5, 5], 0)]    # rider; no bicycle (deleted), no truck (hidden)
    assert [(c, a) for c, a, _, _ in by_image[2]][:2] == [(28, 75), (31, 100)]
    assert by_image[2][2][0] == 32
    assert stats["images"] == 2 and stats["instances"] == 6
    assert stats["per_class"]["car"] == 1 and stats["per_class"]["bicycle"] == 0
    assert stats["groups"] == 1 and stats["fully_occluded"] == 1 and stats["degenerate_polygons"] == 1

    index = load_coco(out, sample / "leftImg8bit" / "train")
    masks, labels, _ = index.instances(1)
    assert labels.tolist() == [2, 0, 1]  # contiguous: car, person, rider
    expected_car = np.zeros((32, 64), dtype=bool)
    expected_car[2:12, 2:10] = True
    assert np.array_equal(masks[0].numpy(), expected_car)
    assert index.load_image(2).shape == (3, 32, 64)


def test_missing_image_and_bad_polygons(sample, tmp_path):
    (sample / "leftImg8bit" / "train" / "bremen" / "bremen_000001_000019_leftImg8bit.png").unlink()
    with pytest.raises(DatasetError, match=r"bremen_000001_000019_gtFine_polygons\.json: its image .*bremen_000001_"
                                           r"000019_leftImg8bit\.png does not exist"):
        convert_cityscapes(sample, "train", tmp_path / "x.json", progress=False)
    gt = sample / "gtFine" / "val" / "lindau" / "lindau_000000_000019_gtFine_polygons.json"
    gt.write_text(json.dumps({"imgHeight": 32, "imgWidth": 64, "objects": [{"label": "car", "polygon": [[1, 2, 3]]}]}))
    with pytest.raises(DatasetError, match=r"lindau_000000_000019_gtFine_polygons\.json: objects\[0\] \(car\)"):
        convert_cityscapes(sample, "val", tmp_path / "x.json", progress=False)
    # json reads NaN; drawn, it would have become some other shape without a word
    gt.write_text('{"imgHeight": 32, "imgWidth": 64, "objects": [{"label": "car", "polygon": [[1, 1], [NaN, 1], [9, 9]]}]}')
    with pytest.raises(DatasetError, match=r"lindau_000000_000019_gtFine_polygons\.json: objects\[0\] \(car\): "
                                           r"polygon point \[nan, 1\] is not finite"):
        convert_cityscapes(sample, "val", tmp_path / "x.json", progress=False)
    gt.write_text("{")
    with pytest.raises(DatasetError, match=r"lindau_000000_000019_gtFine_polygons\.json: malformed JSON"):
        convert_cityscapes(sample, "val", tmp_path / "x.json", progress=False)
    with pytest.raises(DatasetError, match=r"gtFine/test: folder not found"):
        convert_cityscapes(sample, "test", tmp_path / "x.json", progress=False)
    assert not (tmp_path / "x.json").exists()


def test_cli_writes_where_the_registry_looks(sample, capsys):
    assert main(["data", "convert-cityscapes", str(sample), "--split", "val"]) == 0
    assert "1 images, 1 instances" in capsys.readouterr().out
    out = sample / "annotations" / "instancesonly_filtered_gtFine_val.json"
    from pldc_core.data.registry import get_dataset
    spec = get_dataset("cityscapes", data_root=sample.parent)
    assert spec.val_json == out and spec.image_root_val == sample / "leftImg8bit" / "val"
    assert len(spec.load_val()) == 1
