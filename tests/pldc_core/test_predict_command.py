"""`pldc predict`: COCO results of a run's model on new images, through evaluation's own inference path."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from apps.cli import main
from pldc_core.evaluation import CocoEvaluator
from pldc_core.rle import decode_rle
from pldc_core.structures import Categories
from pldc_core.training.checkpoint import load_checkpoint
from tests.cli_checks import assert_one_error_line, snapshot

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


def _val_folder(run) -> Path:
    return Path(load_checkpoint(run)["config"]["data"]["data_root"]) / "synthetic" / "val"


def _decode(segmentation) -> np.ndarray:
    return decode_rle(segmentation["counts"], *segmentation["size"]).astype(bool)


def test_predict_writes_what_evaluation_scores(tiny_run, tmp_path, monkeypatch, capsys):
    # What the evaluator is given, image by image, when `pldc eval` runs on the same checkpoint.
    scored: dict[int, list[dict]] = {}
    original_add = CocoEvaluator.add

    def spy(self, image_id, class_logits, mask_logits):
        original_add(self, image_id, class_logits, mask_logits)
        scored[int(image_id)] = self._predictions[int(image_id)]

    monkeypatch.setattr(CocoEvaluator, "add", spy)
    assert main(["eval", "--checkpoint", str(tiny_run)]) == 0
    monkeypatch.undo()
    val = _val_folder(tiny_run)
    gt = json.loads((val.parent / "annotations" / "instances_val.json").read_text())
    gt_id = {img["file_name"]: img["id"] for img in gt["images"]}
    assert sorted(scored) == sorted(gt_id.values())

    out = tmp_path / "results.json"
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(tiny_run), "--images", str(val), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert f"wrote {out}: {len(results)} instances on 8 of 8 images (teacher of iteration 8" in printed

    # ids 1..N follow the sorted files; every result names its file
    files = sorted(gt_id)
    by_image: dict[int, list[dict]] = {}
    for r in results:
        assert r["file_name"] == f"{val}/{files[r['image_id'] - 1]}"
        by_image.setdefault(r["image_id"], []).append(r)
    for new_id, predicted in by_image.items():
        expected = scored[gt_id[files[new_id - 1]]]
        assert len(predicted) == len(expected)
        for p, e in zip(predicted, expected):
            assert p["category_id"] == e["category_id"]
            assert p["score"] == pytest.approx(e["score"], rel=1e-4, abs=1e-6)
            a, b = _decode(p["segmentation"]), _decode(e["segmentation"])
            assert (a ^ b).sum() <= max(1, 0.01 * (a | b).sum())


def test_results_are_coco_results_of_the_runs_categories(tiny_run, tmp_path, capsys):
    own = tmp_path / "own"
    shutil.copytree(_val_folder(tiny_run), own / "val")
    Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8)).save(own / "small.jpg")
    out = tmp_path / "all.json"
    # a folder, plus a file inside it again: each image once
    assert main(["predict", "--checkpoint", str(tiny_run), "--images", str(own), str(own / "small.jpg"),
                 "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    state = load_checkpoint(tiny_run)
    categories = Categories.from_coco(state["categories"])
    top_k = min(state["config"]["model"]["test_top_k"], state["config"]["model"]["num_queries"] * len(categories))
    files = sorted([str(own / "small.jpg")] + [str(p) for p in (own / "val").glob("*.png")])
    assert sorted({r["file_name"] for r in results}) == files
    assert {r["image_id"] for r in results} == set(range(1, len(files) + 1))
    for r in results:
        with Image.open(r["file_name"]) as im:
            width, height = im.size
        mask = _decode(r["segmentation"])
        assert mask.shape == (height, width)  # at the image's own size, padding removed
        assert r["area"] == int(mask.sum()) and r["category_id"] in categories.ids and 0 <= r["score"] <= 1
        assert set(r) == {"image_id", "category_id", "segmentation", "score", "bbox", "area", "file_name"}
    per_image = {i: [r["score"] for r in results if r["image_id"] == i] for i in range(1, len(files) + 1)}
    assert all(len(s) == top_k and s == sorted(s, reverse=True) for s in per_image.values())

    # a threshold keeps exactly the results scoring at least it
    threshold = float(np.median([r["score"] for r in results]))
    kept_out = tmp_path / "kept.json"
    assert main(["predict", "--checkpoint", str(tiny_run), "--images", str(own), "--out", str(kept_out),
                 "--score-threshold", str(threshold)]) == 0
    kept = json.loads(kept_out.read_text())
    assert 0 < len(kept) < len(results)
    assert [(r["image_id"], r["score"]) for r in kept] == [(r["image_id"], r["score"]) for r in results
                                                            if r["score"] >= threshold]

    # the student's weights give other results than the teacher's
    student_out = tmp_path / "student.json"
    assert main(["predict", "--checkpoint", str(tiny_run), "--images", str(own / "small.jpg"), "--out",
                 str(student_out), "--model", "student"]) == 0
    assert "student of iteration 8" in capsys.readouterr().out
    teacher_small = [r["score"] for r in results if r["file_name"] == str(own / "small.jpg")]
    assert [r["score"] for r in json.loads(student_out.read_text())] != teacher_small


@pytest.mark.parametrize("case", ["empty folder", "corrupt image", "missing file", "not a run", "bad threshold"])
def test_bad_input_is_one_line_and_writes_nothing(tiny_run, tmp_path, capsys, case):
    folder = tmp_path / "images"
    folder.mkdir()
    images, checkpoint, extra = [folder], tiny_run, []
    if case == "corrupt image":
        (folder / "broken.png").write_bytes(b"\x89PNG not really")
        expected = [f"{folder / 'broken.png'}: cannot read image"]
    elif case == "missing file":
        images = [folder / "gone.jpg"]
        expected = [f"{folder / 'gone.jpg'}: no such image file or folder"]
    elif case == "empty folder":
        expected = [f"{folder}: no images"]
    elif case == "not a run":
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(folder / "a.png")
        checkpoint = folder
        expected = [f"{folder}: no checkpoint here", "not a run folder"]
    else:
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(folder / "a.png")
        extra = ["--score-threshold", "1.5"]
        expected = ["--score-threshold must be in [0, 1], got 1.5"]
    before, run_before = snapshot(tmp_path), snapshot(tiny_run)
    code = main(["predict", "--checkpoint", str(checkpoint), "--images", *map(str, images),
                 "--out", str(tmp_path / "out.json"), *extra])
    assert code != 0
    assert_one_error_line(capsys.readouterr().err, "predict", *expected)
    assert snapshot(tmp_path) == before and snapshot(tiny_run) == run_before


@pytest.mark.parametrize("data, expected", [
    ({"dataset": "coco2017"}, (800, 1333)),            # auto: the dataset's protocol, as `pldc eval` uses
    ({"dataset": "cityscapes"}, "full"),
    ({"dataset": "synthetic"}, "train"),
    ({"dataset": "coco2017", "test_size": [600, 1000]}, (600, 1000)),
    ({"dataset": "coco2017", "test_size": "train"}, "train"),
])
def test_new_images_are_resized_as_evaluation_resizes_them(tmp_path, data, expected):
    from pldc_core.config import from_dict
    from pldc_core.predict_command import test_size_of

    cfg = from_dict({"data": {"data_root": str(tmp_path), "test_size": "auto", **data}})
    assert test_size_of(cfg) == expected


def test_a_dataset_unknown_here_resolves_auto_with_a_warning(tmp_path, capsys):
    from pldc_core.config import from_dict
    from pldc_core.predict_command import test_size_of

    cfg = from_dict({"data": {"dataset": "elsewhere", "data_root": str(tmp_path), "test_size": "auto"}})
    assert test_size_of(cfg) == "train"
    assert capsys.readouterr().err.startswith("pldc predict: warning: data.test_size=auto resolved as 'train'")


def test_eval_writes_and_prints_each_class_ap(tiny_run, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert main(["eval", "--checkpoint", str(tiny_run), "--out", str(out), "--per-class"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(out.read_text())
    categories = [c["name"] for c in load_checkpoint(tiny_run)["categories"]]
    per = metrics["AP_per_class"]
    assert sorted(per) == sorted(categories)
    defined = [v for v in per.values() if not np.isnan(v)]
    assert defined and np.mean(defined) == pytest.approx(metrics["AP"])
    lines = printed.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("mask AP per class, lowest first"))
    assert lines[head].endswith("(n/a: no ground truth in these images):") == (len(defined) < len(per))
    listed = lines[head + 1: head + 1 + len(categories)]
    assert [line.rsplit("  ", 1)[1] for line in listed] == sorted(per, key=lambda n: (np.isnan(per[n]), per[n]))


def test_per_class_lines_put_classes_without_ground_truth_last():
    from pldc_core.eval_command import per_class_lines

    text = per_class_lines({"disk": 30.0, "ellipse": float("nan"), "bar": 5.5})
    assert text.splitlines() == ["mask AP per class, lowest first (n/a: no ground truth in these images):",
                                 "  AP  5.50%  bar", "  AP 30.00%  disk", "  AP    n/a  ellipse"]
    assert per_class_lines({"disk": 30.0}).splitlines()[0] == "mask AP per class, lowest first:"
