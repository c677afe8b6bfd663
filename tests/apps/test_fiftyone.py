"""FiftyOne integration (apps/fiftyone_app/export.py): the dataset against the records, FiftyOne's
confusion matrix against ours, the curation round trip, the App over HTTP and its screenshot.

FiftyOne talks to a private mongod in a temporary folder (``apps.fiftyone_app.database``); at
the end the datasets are deleted, the App is closed and the mongod is stopped and checked gone.
Set PLDC_FIFTYONE_SCREENSHOT=PATH to also copy the App screenshot there (docs/images/fiftyone_app.png).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from PIL import Image

from apps.fiftyone_app.database import free_port, private_database
from apps.fiftyone_app.masks import max_uncertainty, rle_crops
from pldc_core.data.coco import load_coco
from pldc_core.records.fabricated_run import fabricate_run
from pldc_core.records.schema import ERROR_TYPES
from pldc_core.records.store import decode_mask, decode_uncertainty, load_records, write_records
from workbench.confusion import BACKGROUND, confusion_matrix
from workbench.curation import CurationStore



def needs_db(test):
    """The tests that run FiftyOne's database (the rle_crops/max_uncertainty ones at the end do not)."""
    return pytest.mark.fiftyone(pytest.mark.slow(test))


ITERATIONS = (500, 1000)
CHROMIUM = "/usr/bin/chromium"


def _processes_using(text: str) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            out.append(int(pid))
    return out


@pytest.fixture(scope="module")
def fo(tmp_path_factory):
    db_dir = tmp_path_factory.mktemp("mongo")
    with private_database(db_dir) as (fiftyone, _):
        yield fiftyone
    assert _processes_using(str(db_dir)) == [], "a mongod on the test database is still running"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return fabricate_run(tmp_path_factory.mktemp("fo") / "run", n_images=12, n_queries=10, iterations=ITERATIONS,
                         image_size=(160, 200))


@pytest.fixture(scope="module")
def built(fo, run):
    from apps.fiftyone_app.export import build_dataset

    return build_dataset(run, name="pldc-test")


def _labels(dataset, field: str) -> dict[tuple[int, int], object]:
    return {(d.image_id, d.query): d for s in dataset.select_fields(field) for d in s[field].detections}


def _full_mask(det, height: int, width: int) -> np.ndarray:
    x, y, w, h = (int(round(v * s)) for v, s in zip(det.bounding_box, (width, height, width, height)))
    out = np.zeros((height, width), dtype=bool)
    out[y:y + h, x:x + w] = det.mask
    return out


def _float_or_none(value) -> float | None:
    return None if value is None or np.isnan(value) else float(value)


@needs_db
def test_dataset_matches_the_records(built, run):
    names = [c["name"] for c in load_records(run, 500, columns=["image_id"]).manifest["categories"]]
    rec = load_records(run, 1000)
    root = Path(rec.manifest["image_root"])
    assert len(built) == len(rec.images) == 12
    by_id = {s.image_id: s for s in built}
    for img in rec.images.itertuples():
        s = by_id[img.image_id]
        assert s.filepath == str(root / img.file_name)
        assert (s.metadata.width, s.metadata.height) == (img.width, img.height) == (200, 160)

    gt = rec.gt.set_index("gt_id")
    gt_labels = {d.gt_id: (s.image_id, d) for s in built for d in s.ground_truth.detections}
    assert sorted(gt_labels) == sorted(gt.index)
    for gt_id, (image_id, d) in gt_labels.items():
        row = gt.loc[gt_id]
        assert (image_id, d.label) == (row.image_id, names[row.gt_class])
        np.testing.assert_array_equal(_full_mask(d, 160, 200), decode_mask(row))
    assert sum(len(s.ground_truth.detections) == 0 for s in built) == 1  # image 10 is known to be empty

    for it in ITERATIONS:
        rec = load_records(run, it)
        q = rec.queries
        labels = _labels(built, f"pseudo_labels_{it}")
        nonempty = q[q["area"] > 0]
        assert sorted(labels) == sorted(zip(nonempty["image_id"], nonempty["query"]))
        assert len(nonempty) < len(q)  # the fabricated run has empty masks; they have no label
        for row in nonempty.itertuples():
            d = labels[(row.image_id, row.query)]
            dicc = row.corrected_class >= 0
            assert d.label == d.teacher_class == names[row.pred_class]
            assert (d.c, d.m, d.s, d.confidence) == (float(row.c), float(row.m), float(row.s), float(row.s))
            assert d.iou == _float_or_none(row.iou) and d.w == _float_or_none(row.dicc_w)
            assert d.unc_inside == _float_or_none(row.unc_mean_inside)
            assert d.unc_overlap == _float_or_none(row.unc_mean_overlap)
            assert (d.error_type, d.tags) == (row.error_type, [row.error_type])
            assert (d.keep_ddtf, d.keep_coupled) == (row.keep_ddtf, row.keep_coupled)
            assert d.dicc_original == (names[row.pred_class] if dicc else None)
            assert d.dicc_corrected == (names[row.corrected_class] if dicc else None)
            assert d.gt_id == (row.gt_id if row.gt_id >= 0 else None)
            assert d.iteration == it
            np.testing.assert_array_equal(_full_mask(d, row.height, row.width), decode_mask(row))
        # a hand-checked record: the first label of image 1 at iteration 1000
        if it == 1000:
            d = labels[(1, 0)]
            assert (d.label, d.error_type, d.keep_ddtf, d.dicc_corrected) == ("couch", "Cor", True, "couch")
            assert d.eval_1000 == "tp"

        # the uncertainty map: per pixel, the largest u of the kept pseudo-labels
        for image_id, rows in q.groupby("image_id"):
            kept = rows[rows["keep_ddtf"]]
            heat = by_id[image_id][f"uncertainty_{it}"]
            if len(kept) == 0:
                assert heat is None
                continue
            expected = np.max([np.rint(decode_uncertainty(r) * 255) for r in kept.itertuples()], axis=0)
            assert heat.range == [0, 255]
            np.testing.assert_array_equal(heat.map, expected.astype(np.uint8))
            assert heat.map.shape == (40, 50)

        # evaluation ran on the kept labels only; the others stay in the field, without eval results
        assert f"eval_{it}" in built.list_evaluations()
        for row in nonempty.itertuples():
            result = labels[(row.image_id, row.query)][f"eval_{it}"] if row.keep_ddtf else None
            assert (result in ("tp", "fp")) if row.keep_ddtf else result is None

        # saved views: one per error type, kept-but-wrong, filtered-but-correct
        views = set(built.list_saved_views())
        for t in ERROR_TYPES:
            assert built.load_saved_view(f"it{it}-{t}").count(f"pseudo_labels_{it}.detections") == \
                int((nonempty["error_type"] == t).sum())
        wrong = nonempty["keep_ddtf"] & nonempty["error_type"].notna() & (nonempty["error_type"] != "Cor")
        missed = ~nonempty["keep_ddtf"] & (nonempty["error_type"] == "Cor")
        field = f"pseudo_labels_{it}.detections"
        assert built.load_saved_view(f"it{it}-kept-but-wrong").count(field) == wrong.sum() > 0
        assert built.load_saved_view(f"it{it}-filtered-but-correct").count(field) == missed.sum()
        assert {f"it{it}-kept-but-wrong", f"it{it}-filtered-but-correct"} <= views


@needs_db
def test_building_again_adds_nothing_and_keeps_app_tags(built, run):
    from apps.fiftyone_app.export import build_dataset

    field = "pseudo_labels_500"
    ids = sorted(built.values(f"{field}.detections.id", unwind=True))
    one = built.select_labels(ids=[ids[0]])
    one.tag_labels("mine", label_fields=[field])
    again = build_dataset(run, name="pldc-test")
    assert len(again) == 12 and sorted(again.values(f"{field}.detections.id", unwind=True)) == ids
    assert again.count_label_tags(field).get("mine") == 1

    # re-recorded records (same content, new files) are rewritten whole: same labels, new ids
    rec = load_records(run, 500)
    import pyarrow as pa

    from pldc_core.records.schema import GT_SCHEMA, IMAGE_SCHEMA, QUERY_SCHEMA
    write_records(run, 500, pa.Table.from_pandas(rec.queries, schema=QUERY_SCHEMA, preserve_index=False),
                  pa.Table.from_pandas(rec.gt, schema=GT_SCHEMA, preserve_index=False),
                  pa.Table.from_pandas(rec.images, schema=IMAGE_SCHEMA, preserve_index=False), rec.manifest)
    again = build_dataset(run, name="pldc-test")
    new_ids = again.values(f"{field}.detections.id", unwind=True)
    assert len(again) == 12 and len(new_ids) == len(ids) and not set(new_ids) & set(ids)
    assert again.count_label_tags(field).get("mine") is None
    assert again.count(f"{field}.detections") == int((rec.queries["area"] > 0).sum())
    assert "eval_500" in again.list_evaluations()


@needs_db
def test_fiftyone_confusion_matrix_agrees_with_ours(built, run):
    """Matching rule both use: class-agnostic, IoU > 0.5, pseudo-labels kept by DDTF on images with
    known GT. Ours counts every kept pseudo-label on the GT it overlaps; FiftyOne matches each GT
    once, most confident (s) first, so a further pseudo-label on a matched GT is its false
    positive (background column). Expected: ours with those duplicates moved to background."""
    rec = load_records(run, 1000)
    names = [c["name"] for c in rec.manifest["categories"]]
    n = len(names)
    ours = confusion_matrix(rec.queries, rec.gt, n, kept_by="ddtf").counts

    kept = rec.queries[rec.queries["keep_ddtf"] & rec.queries["iou"].notna() & (rec.queries["area"] > 0)]
    matched = kept[kept["iou"] > 0.5].sort_values(["s", "query"], ascending=[False, True], kind="stable")
    duplicates = matched[matched.duplicated("gt_id", keep="first")]
    expected = ours.copy()
    for row in duplicates.itertuples():
        expected.loc[row.pred_class, row.gt_class] -= 1
        expected.loc[row.pred_class, BACKGROUND] += 1

    results = built.load_evaluation_results("eval_1000")
    theirs = results.confusion_matrix(classes=names, include_other=False, include_missing=True)
    theirs = np.asarray(theirs).T  # FiftyOne: rows GT, columns predictions; "(none)" last, like our background
    np.testing.assert_array_equal(theirs, expected.to_numpy())
    assert np.trace(theirs[:n, :n]) > 0 and theirs[:n, n].sum() > 0 and theirs[n, :n].sum() > 0


def _cli(*argv: str) -> int:
    from apps.fiftyone_app.export import add_arguments
    from apps.fiftyone_app.export import run as run_command

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run_command(parser.parse_args(list(argv)))


@needs_db
def test_curation_round_trip(built, run, tmp_path, capsys):
    from apps.fiftyone_app.export import FiftyOneExportError, import_curation

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    rec = load_records(copy, 1000)
    names = [c["name"] for c in rec.manifest["categories"]]
    field = "pseudo_labels_1000"
    labels = _labels(built, field)
    q = rec.queries[rec.queries["area"] > 0].set_index(["image_id", "query"])
    keys = sorted(labels)
    acc, rej, tag_rel, edit_rel = keys[0], keys[3], keys[5], keys[8]
    new_tag_class = (int(q.loc[tag_rel, "pred_class"]) + 1) % len(names)
    new_edit_class = (int(q.loc[edit_rel, "pred_class"]) + 2) % len(names)

    view = built.select_labels(ids=[labels[acc].id])
    view.tag_labels("accept", label_fields=[field])
    built.select_labels(ids=[labels[rej].id]).tag_labels("reject", label_fields=[field])
    built.select_labels(ids=[labels[tag_rel].id]).tag_labels(f"relabel:{names[new_tag_class]}", label_fields=[field])
    sample = next(s for s in built if s.image_id == edit_rel[0])
    det = next(d for d in sample[field].detections if d.query == edit_rel[1])
    det.label = names[new_edit_class]
    sample.save()

    try:
        # the curated dataset belongs to the copied run: point it there for the CLI
        info = dict(built.info)
        info["pldc"] = {**info["pldc"], "run_dir": str(copy.resolve())}
        built.info = info
        built.save()
        out = tmp_path / "curated.json"
        assert _cli(str(copy), "--dataset-name", "pldc-test", "--checkpoint", "1000", "--export-curated", str(out)) == 0
        assert "curation imported: accept 1, reject 1, relabel 2, clear 0, unchanged 0" in capsys.readouterr().out

        edits = CurationStore(copy).edits(1000).set_index(["image_id", "query"])
        assert set(edits.index) == {acc, rej, tag_rel, edit_rel}
        assert edits.loc[acc, "action"] == "accept" and edits.loc[rej, "action"] == "reject"
        assert (edits.loc[tag_rel, "action"], edits.loc[tag_rel, "new_class"]) == ("relabel", new_tag_class)
        assert (edits.loc[edit_rel, "action"], edits.loc[edit_rel, "new_class"]) == ("relabel", new_edit_class)
        assert set(edits["source"]) == {"fiftyone"}

        coco = json.loads(out.read_text())
        cats = rec.manifest["categories"]
        anns = {(a["image_id"], a["pldc_source"]["query"]): a for a in coco["annotations"]}
        assert set(anns) == {acc, tag_rel, edit_rel}
        assert anns[acc]["category_id"] == cats[int(q.loc[acc, "pred_class"])]["id"]
        assert anns[tag_rel]["category_id"] == cats[new_tag_class]["id"]
        assert anns[edit_rel]["category_id"] == cats[new_edit_class]["id"]
        for key, ann in anns.items():
            assert ann["segmentation"]["counts"] == q.loc[key, "mask_rle"]
            assert ann["pldc_source"]["iteration"] == 1000
        load_coco(out, rec.manifest["image_root"])  # what `pldc train data.extra_labeled_json=` loads

        # importing again writes nothing; removing a tag in FiftyOne clears the decision
        size = (copy / "curation" / "edits.jsonl").stat().st_size
        assert import_curation(built, copy, [1000])["unchanged"] == 4
        assert (copy / "curation" / "edits.jsonl").stat().st_size == size
        view.untag_labels("accept", label_fields=[field])
        assert import_curation(built, copy, [1000])["clear"] == 1
        assert set(CurationStore(copy).edits(1000).set_index(["image_id", "query"]).index) == {rej, tag_rel, edit_rel}

        # contradictory decisions are refused, naming the label
        view.tag_labels("reject", label_fields=[field])
        view.tag_labels("accept", label_fields=[field])
        with pytest.raises(FiftyOneExportError, match=f"image {acc[0]} query {acc[1]}: tagged 'reject'"):
            import_curation(built, copy, [1000])
    finally:
        for tag in ("accept", "reject", f"relabel:{names[new_tag_class]}"):
            built.untag_labels(tag, label_fields=[field])
        det.label = names[int(q.loc[edit_rel, "pred_class"])]
        sample.save()
        info["pldc"] = {**info["pldc"], "run_dir": str(Path(run).resolve())}
        built.info = info
        built.save()


@needs_db
def test_bad_requests_are_refused(fo, run, capsys):
    assert _cli(str(run), "--dataset-name", "pldc-test", "--checkpoint", "123") == 2
    assert "no records for iteration(s) [123]" in capsys.readouterr().err
    other = run.parent / "other"
    shutil.copytree(run, other)
    assert _cli(str(other), "--dataset-name", "pldc-test", "--checkpoint", "500", "--no-evaluate") == 2
    assert "holds run" in capsys.readouterr().err


@needs_db
def test_app_answers_on_localhost_and_shows_our_fields(built, tmp_path):
    import requests

    from apps.fiftyone_app.export import launch

    from fiftyone.core.odm.dataset import ActiveFields

    port = free_port()
    sample = next(s for s in built if len(s.pseudo_labels_1000.detections) <= 4 and len(s.ground_truth.detections))
    shown = built.app_config.active_fields
    built.app_config.active_fields = ActiveFields(paths=["pseudo_labels_1000", "uncertainty_1000"])
    built.save()
    session = launch(built, port=port, address="127.0.0.1", sample_id=sample.id)
    try:
        page = requests.get(f"http://127.0.0.1:{port}/", timeout=120)
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert requests.get(f"http://127.0.0.1:{port}/fiftyone", timeout=120).json()["version"]
        shot = tmp_path / "app.png"
        if Path(CHROMIUM).exists():
            subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                            "--disable-component-update", "--no-first-run", "--disable-sync",
                            f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}", f"--screenshot={shot}",
                            "--window-size=1400,900", "--virtual-time-budget=20000", f"http://127.0.0.1:{port}/"],
                           check=True, capture_output=True, timeout=300)
            pixels = np.asarray(Image.open(shot).convert("RGB"))
            assert pixels.shape == (900, 1400, 3) and pixels.std() > 10  # a rendered page, not a blank one
            if os.environ.get("PLDC_FIFTYONE_SCREENSHOT"):
                shutil.copyfile(shot, os.environ["PLDC_FIFTYONE_SCREENSHOT"])
    finally:
        session.close()
        built.app_config.active_fields = shown
        built.save()
    for _ in range(240):  # the App server exits after its last session closes
        if not _processes_using(f"--port {port}"):
            break
        time.sleep(0.25)
    assert _processes_using(f"--port {port}") == []


@needs_db
def test_a_run_without_ground_truth_or_dicc(fo, tmp_path):
    from apps.fiftyone_app.export import build_dataset

    run = fabricate_run(tmp_path / "nogt", n_images=3, n_queries=6, iterations=(500,), with_gt=False,
                        with_dicc=False)
    dataset = build_dataset(run, name="pldc-nogt")
    rec = load_records(run, 500)
    assert len(dataset) == 3 and not dataset.exists("ground_truth")
    labels = _labels(dataset, "pseudo_labels_500")
    assert len(labels) == int((rec.queries["area"] > 0).sum())
    assert all(d.error_type is None and d.iou is None and d.tags == [] and d.dicc_corrected is None
               and d.w is None for d in labels.values())
    assert dataset.list_evaluations() == []  # nothing to evaluate against
    assert dataset.load_saved_view("it500-kept-but-wrong").count("pseudo_labels_500.detections") == 0


def _encode(masks: np.ndarray) -> list[str]:
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [r["counts"].decode("ascii") for r in rles]


def test_rle_crops_equal_pycocotools_decode():
    rng = np.random.default_rng(0)
    for _ in range(60):
        H, W = (int(v) for v in rng.integers(1, 50, size=2))
        masks = np.stack([rng.random((H, W)) < rng.random(),                # noise (runs across columns)
                          np.ones((H, W), dtype=bool),                      # one run over the whole image
                          np.zeros((H, W), dtype=bool)])                    # empty
        y, x = int(rng.integers(H)), int(rng.integers(W))
        masks[2, y:, x:] = True                                             # touches the bottom-right corner
        strings = _encode(masks)
        tight = mask_utils.toBbox([{"size": [H, W], "counts": s.encode()} for s in strings])
        for boxes in (tight, [[int(rng.integers(W)), int(rng.integers(H)), 1, 1]] * 3):
            boxes = np.asarray(boxes, dtype=np.int64)
            boxes[:, 2] = np.minimum(boxes[:, 2], W - boxes[:, 0])
            boxes[:, 3] = np.minimum(boxes[:, 3], H - boxes[:, 1])
            for crop, mask, (bx, by, bw, bh) in zip(rle_crops(strings, [H] * 3, [W] * 3, boxes), masks, boxes):
                np.testing.assert_array_equal(crop, mask[by:by + bh, bx:bx + bw])
    # a hand-made 3x2 mask, column-major runs: 1 zero, 2 ones, 2 zeros, 1 one
    mask = np.array([[0, 0], [1, 0], [1, 1]], dtype=bool)
    assert rle_crops(_encode(mask[None]), [3], [2], [[0, 1, 2, 2]])[0].tolist() == [[True, False], [True, True]]
    assert rle_crops(_encode(mask[None]), [3], [2], [[0, 0, 0, 0]])[0].shape == (0, 0)
    with pytest.raises(ValueError, match="outside its 3x2 image"):
        rle_crops(_encode(mask[None]), [3], [2], [[1, 1, 2, 2]])


def test_max_uncertainty_is_the_pixelwise_maximum():
    import io

    def png(values):
        buf = io.BytesIO()
        Image.fromarray(np.asarray(values, dtype=np.uint8), mode="L").save(buf, format="PNG")
        return buf.getvalue()

    out = max_uncertainty([png([[0, 255], [10, 3]]), png([[5, 0], [200, 3]])])
    assert out.dtype == np.uint8 and out.tolist() == [[5, 255], [200, 3]]
    assert max_uncertainty([]) is None and max_uncertainty([], shape=(2, 3)).tolist() == [[0, 0, 0]] * 2
    with pytest.raises(ValueError, match="maps of sizes"):
        max_uncertainty([png([[1]]), png([[1, 2]])])
