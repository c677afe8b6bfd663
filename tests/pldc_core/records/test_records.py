import json
import math
import os
import threading
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pldc_core import rle
from pldc_core.config import load_config
from pldc_core.records import rows, schema, store
from pldc_core.records.fabricated_run import fabricate_query_frame, fabricate_query_table, fabricate_run
from pldc_core.records.schema import ERROR_TYPES, GT_SCHEMA, IMAGE_SCHEMA, MANIFEST_KEYS, QUERY_SCHEMA

ln = math.log
THRESHOLDS = {"filter": "ddtf", "c_t": 0.5, "m_t": 0.8, "s_t": 0.6}
SUPER = {0: "animal", 1: "animal"}
H = W = 32  # image; the mask logits are 8 x 8


def logit(p):
    return ln(p / (1 - p))


def _teacher():
    """Three queries over two classes, with hand-computed qualities (see each comment)."""
    # softmax over [class 0, class 1, no object]
    class_logits = np.log(np.array([[8, 1, 1],     # probs .8 .1 .1 -> c = .8, class 0
                                    [2, 6, 2],     # .2 .6 .2       -> c = .6, class 1
                                    [1, 2, 7]],    # .1 .2 .7       -> c = .2, class 1
                                   dtype=np.float64))
    masks = np.full((3, 8, 8), logit(0.2))
    # q0: rows/cols 1..6; sigma .8 on its 2-pixel inner band, .99 on the 2x2 core (rows/cols 3..4)
    masks[0, 1:7, 1:7] = logit(0.8)
    masks[0, 3:5, 3:5] = logit(0.99)
    # q1: rows 0..3 over the full width (touches three image borders); sigma by row .95 .9 .8 .7
    masks[1] = logit(0.05)
    for row, p in enumerate((0.95, 0.9, 0.8, 0.7)):
        masks[1, row] = logit(p)
    masks[2] = -5.0  # q2: empty
    return class_logits.astype(np.float32), masks.astype(np.float32)


def _gt():
    a = np.zeros((H, W), dtype=bool)
    a[4:28, 4:28] = True      # q0's upsampled mask and its 4 corners, class 0
    b = np.zeros((H, W), dtype=bool)
    b[0:8, :] = True          # class 1
    return rows.GroundTruth(np.stack([a, b]), np.array([0, 1]), np.array([77, 78]))


def _table(**kw):
    class_logits, mask_logits = _teacher()
    args = dict(thresholds=THRESHOLDS, gt=_gt(), supercategory=SUPER)
    args.update(kw)
    return rows.build_query_table(5, class_logits, mask_logits, (H, W), **args)


def test_qualities_and_keep_flags_are_the_hand_computed_ones():
    t = _table().to_pydict()
    assert t["query"] == [0, 1, 2] and t["image_id"] == [5, 5, 5]
    assert t["pred_class"] == [0, 1, 1]
    np.testing.assert_allclose(t["c"], [0.8, 0.6, 0.2], atol=1e-6)
    m0 = (4 * 0.99 + 32 * 0.8) / 36
    m1 = (0.95 + 0.9 + 0.8 + 0.7) / 4
    np.testing.assert_allclose(t["m"], [m0, m1, 0.0], atol=1e-6)
    np.testing.assert_allclose(t["s"], [0.8 * m0, 0.6 * m1, 0.0], atol=1e-6)
    assert t["keep_ddtf"] == [True, True, False]       # c >= .5 and m >= .8
    assert t["keep_coupled"] == [True, False, False]   # s >= .6: .657, .5025, 0
    assert t["top5_classes"] == [[0, 1], [1, 0], [1, 0]]  # N = 2: two entries
    np.testing.assert_allclose(t["top5_probs"][1], [0.6, 0.2], atol=1e-6)


def test_masks_are_upsampled_and_round_trip_through_rle():
    t = _table()
    frame = store.to_frame(t)
    # symmetric logits (+-logit(.8)) cross 0 half way between low-res pixel centres: along an edge
    # q0's mask is the 4x nearest upsampling, image rows/cols 4..27; at the four corners the
    # bilinear weight of the inside pixel is only .625^2 < .5, so they drop out
    expected0 = np.zeros((H, W), dtype=bool)
    expected0[4:28, 4:28] = True
    expected0[[4, 4, 27, 27], [4, 27, 4, 27]] = False
    np.testing.assert_array_equal(store.decode_mask(frame.iloc[0]), expected0)
    # q1: between low-res rows 3 (logit .847) and 4 (logit -2.944) the zero crossing is at 0.22 of
    # the way, so image rows 0..14 (row 14 samples 1/8 of the way; row 15, 3/8) are set
    expected1 = np.zeros((H, W), dtype=bool)
    expected1[:15] = True
    np.testing.assert_array_equal(store.decode_mask(frame.iloc[1]), expected1)
    assert not store.decode_mask(frame.iloc[2]).any()
    assert frame["area"].tolist() == [572, 480, 0]
    assert [list(b) for b in frame["bbox"]] == [[4, 4, 24, 24], [0, 0, 32, 15], [0, 0, 0, 0]]
    assert frame["height"].tolist() == [H] * 3 and frame["width"].tolist() == [W] * 3
    assert isinstance(t["mask_rle"][0].as_py(), str)
    # decode_mask also takes itertuples rows and dicts
    row = next(frame.itertuples())
    np.testing.assert_array_equal(store.decode_mask(row), expected0)
    np.testing.assert_array_equal(store.decode_mask(t.slice(0, 1).to_pylist()[0]), expected0)


def test_uncertainty_png_round_trip_and_summaries():
    t = _table()
    frame = store.to_frame(t)
    _, mask_logits = _teacher()
    sigma = 1 / (1 + np.exp(-mask_logits.astype(np.float64)))
    u = 1 - 2 * np.abs(sigma - 0.5)
    for q in range(3):
        decoded = store.decode_uncertainty(frame.iloc[q])
        assert decoded.shape == (8, 8) and decoded.dtype == np.float32
        assert np.abs(decoded - u[q]).max() <= 0.5 / 255 + 1e-6
    # q0: u = .4 on the band (32 px), .02 on the core (4 px)
    # q1: u by row .1 .2 .4 .6; its band is rows 2..3 only (the image border is not a boundary)
    np.testing.assert_allclose(frame["unc_mean_inside"][:2], [(32 * 0.4 + 4 * 0.02) / 36, 1.3 / 4], atol=1e-5)
    np.testing.assert_allclose(frame["unc_mean_boundary"][:2], [0.4, 0.5], atol=1e-5)
    # overlap of q0 (rows/cols 1..6) and q1 (rows 0..3), both kept by DDTF: rows 1..3, cols 1..6;
    # q0's u there: 16 band pixels at .4 and 2 core pixels at .02; q1's: rows 1..3 -> .2 .4 .6
    np.testing.assert_allclose(frame["unc_mean_overlap"][:2], [(16 * 0.4 + 2 * 0.02) / 18, 0.4], atol=1e-5)
    assert frame.loc[2, ["unc_mean_inside", "unc_mean_boundary", "unc_mean_overlap"]].isna().all()


def test_overlap_follows_the_runs_filter():
    frame = store.to_frame(_table(thresholds={**THRESHOLDS, "filter": "coupled"}))
    # the coupled filter keeps only q0: q0 overlaps no *other* kept mask; q1 overlaps q0
    assert np.isnan(frame["unc_mean_overlap"][0])
    assert frame["unc_mean_overlap"][1] == pytest.approx(0.4, abs=1e-5)


def test_masks_at_most_the_run_s_area_threshold_are_not_kept():
    # areas at image resolution: q0 572, q1 480, q2 0; DDTF keeps q0 and q1, the coupled filter q0
    for area_t, ddtf, coupled in [(0, [True, True, False], [True, False, False]),
                                  (480, [True, False, False], [True, False, False]),
                                  (572, [False, False, False], [False, False, False])]:
        frame = store.to_frame(_table(thresholds={**THRESHOLDS, "mask_area_threshold": area_t}))
        assert frame["area"].tolist() == [572, 480, 0]
        assert frame["keep_ddtf"].tolist() == ddtf and frame["keep_coupled"].tolist() == coupled
    # q1 is no pseudo-label any more: q0 overlaps no kept mask, q1 still overlaps q0
    frame = store.to_frame(_table(thresholds={**THRESHOLDS, "mask_area_threshold": 480}))
    assert np.isnan(frame["unc_mean_overlap"][0]) and frame["unc_mean_overlap"][1] == pytest.approx(0.4, abs=1e-5)


def test_gt_columns():
    frame = store.to_frame(_table())
    # q0 = GT 77 but its 4 corners -> Cor. q1 (rows 0..14) vs GT 78 (rows 0..7): 256 / 480 -> Cor on 78;
    # vs GT 77: 11 x 24 = 264 shared, union 792 -> 1/3. q2 is empty -> BG.
    assert frame["error_type"].tolist() == ["Cor", "Cor", "BG"]
    assert frame["gt_id"].tolist() == [77, 78, -1]
    assert frame["gt_class"].tolist() == [0, 1, -1]
    np.testing.assert_allclose(frame["iou"], [572 / 576, 256 / 480, 0.0], atol=1e-6)


def test_iou_column_is_the_highest_iou_even_when_another_gt_decides():
    # q1 as class 0: GT 77 (class 0) overlaps 264 / 792 = 1/3 -> Loc on 77; GT 79 (class 1, rows
    # 0..6) overlaps more, 224 / 480, but is not a match (<= .5): the iou column holds that
    class_logits, mask_logits = _teacher()
    class_logits[1] = np.log([6, 2, 2])
    b = np.zeros((H, W), dtype=bool)
    b[0:7] = True
    gt = rows.GroundTruth(np.stack([_gt().masks[0], b]), np.array([0, 1]), np.array([77, 79]))
    t = rows.build_query_table(5, class_logits, mask_logits, (H, W), thresholds=THRESHOLDS, gt=gt,
                            supercategory={0: "animal", 1: "vehicle"})
    row = t.slice(1, 1).to_pylist()[0]
    assert (row["error_type"], row["gt_id"], row["gt_class"]) == ("Loc", 77, 0)
    assert row["iou"] == pytest.approx(224 / 480, abs=1e-6)


def test_without_gt_the_gt_columns_are_empty():
    t = _table(gt=None, supercategory=None)
    d = t.to_pydict()
    assert d["gt_id"] == [-1] * 3 and d["gt_class"] == [-1] * 3 and d["error_type"] == [None] * 3
    assert all(math.isnan(x) for x in d["iou"])
    assert rows.build_gt_table(5, None, (H, W)).num_rows == 0
    frame = store.to_frame(t)
    assert frame["error_type"].isna().all() and frame["iou"].isna().all()


def test_known_but_empty_gt_gives_background():
    empty = rows.GroundTruth(np.zeros((0, H, W), dtype=bool), np.zeros(0), np.zeros(0))
    d = _table(gt=empty).to_pydict()
    assert d["error_type"] == ["BG"] * 3 and d["gt_id"] == [-1] * 3 and d["iou"] == [0.0] * 3


def test_dicc_columns_for_a_subset_of_queries():
    dicc = rows.DiccInfo(clip_probs=np.array([[0.3, 0.7]]), w=0.4, corrected_classes=np.array([1]), query_indices=[0])
    d = _table(dicc=dicc).to_pydict()
    assert d["clip_top5_classes"] == [[1, 0], None, None]
    np.testing.assert_allclose(d["clip_top5_probs"][0], [0.7, 0.3], atol=1e-6)
    assert d["clip_top5_probs"][1:] == [None, None]
    np.testing.assert_allclose(d["dicc_w"][0], 0.4, atol=1e-6)
    assert all(math.isnan(x) for x in d["dicc_w"][1:])
    assert d["corrected_class"] == [1, -1, -1]
    none = _table().to_pydict()
    assert none["clip_top5_classes"] == [None] * 3 and none["corrected_class"] == [-1] * 3
    with pytest.raises(store.RecordError, match="query_indices"):
        _table(dicc=rows.DiccInfo(np.ones((1, 2)), 0.4, np.array([1]), query_indices=[5]))


def test_bad_builder_input_is_reported():
    class_logits, mask_logits = _teacher()
    with pytest.raises(store.RecordError, match="s_t"):
        rows.build_query_table(5, class_logits, mask_logits, (H, W), thresholds={"c_t": 0.5, "m_t": 0.5})
    with pytest.raises(store.RecordError, match="image 5"):
        rows.build_query_table(5, class_logits[:2], mask_logits, (H, W), thresholds=THRESHOLDS)
    with pytest.raises(store.RecordError, match="GT masks"):
        _table(gt=rows.GroundTruth(np.zeros((1, 8, 8), dtype=bool), [0], [1]))


def test_gt_and_image_tables():
    g = rows.build_gt_table(5, _gt(), (H, W))
    assert g.schema.equals(GT_SCHEMA)
    d = g.to_pydict()
    assert d["gt_id"] == [77, 78] and d["gt_class"] == [0, 1] and d["area"] == [576, 256]
    assert d["bbox"] == [[4, 4, 24, 24], [0, 0, 32, 8]]
    np.testing.assert_array_equal(store.decode_mask(g.slice(1, 1).to_pylist()[0]), _gt().masks[1])
    img = rows.build_image_row(5, "a/b.png", (H, W), has_gt=True)
    assert img.schema.equals(IMAGE_SCHEMA) and img.to_pylist() == [
        {"image_id": 5, "file_name": "a/b.png", "height": H, "width": W, "has_gt": True}]


def test_ground_truth_from_rles_gives_the_same_tables_as_dense_masks():
    dense = _gt()
    from_rles = rows.GroundTruth.from_rles(rle.encode_masks(dense.masks), dense.labels, dense.ann_ids)
    assert from_rles.masks is None and from_rles.size == (H, W)
    pd.testing.assert_frame_equal(_table(gt=from_rles).to_pandas(), _table(gt=dense).to_pandas())
    assert rows.build_gt_table(5, from_rles, (H, W)).equals(rows.build_gt_table(5, dense, (H, W)))
    with pytest.raises(store.RecordError, match=r"GT masks are \(32, 32\), image is \(16, 32\)"):
        rows.build_gt_table(5, from_rles, (16, 32))
    with pytest.raises(store.RecordError, match="same length"):
        rows.GroundTruth.from_rles(rle.encode_masks(dense.masks), [0], [77])
    with pytest.raises(store.RecordError, match="give masks or rles"):
        rows.GroundTruth(None, [0], [1])


def test_columns_of_several_images_make_the_same_table_as_one_image_at_a_time():
    class_logits, mask_logits = _teacher()
    dicc = rows.DiccInfo(clip_probs=np.array([[0.3, 0.7]]), w=0.4, corrected_classes=np.array([1]), query_indices=[0])
    images = [dict(image_id=5, gt=_gt(), dicc=dicc), dict(image_id=6, gt=None, dicc=None),
              dict(image_id=7, gt=rows.GroundTruth(np.zeros((0, H, W), dtype=bool), [], []), dicc=None)]
    parts, tables = [], []
    for im in images:
        args = dict(thresholds=THRESHOLDS, gt=im["gt"], supercategory=SUPER, dicc=im["dicc"])
        parts.append(rows.query_columns(im["image_id"], class_logits, mask_logits, (H, W), **args))
        tables.append(rows.build_query_table(im["image_id"], class_logits, mask_logits, (H, W), **args))
    no_queries = rows.query_columns(8, class_logits[:0], mask_logits[:0], (H, W), thresholds=THRESHOLDS)
    assert no_queries is None
    batched = rows.queries_table(parts[:1] + [no_queries] + parts[1:])
    assert batched.schema.equals(QUERY_SCHEMA)
    pd.testing.assert_frame_equal(batched.to_pandas(), pa.concat_tables(tables).to_pandas())
    assert batched.column("error_type").to_pylist()[:6] == tables[0].column("error_type").to_pylist() + [None] * 3
    assert rows.queries_table([]).num_rows == 0 and rows.queries_table([None]).num_rows == 0
    gts = [rows.gt_columns(i["image_id"], i["gt"], (H, W)) for i in images]
    assert rows.gt_table(gts).to_pylist() == rows.build_gt_table(5, _gt(), (H, W)).to_pylist()
    table = rows.images_table([rows.image_columns(5, "a.png", (H, W), has_gt=True),
                               rows.image_columns(6, "b.png", (16, 8), has_gt=False)])
    assert table.to_pylist() == (rows.build_image_row(5, "a.png", (H, W), has_gt=True).to_pylist()
                                 + rows.build_image_row(6, "b.png", (16, 8), has_gt=False).to_pylist())


# --------------------------------------------------------------------------- writing and reading


def _manifest(iteration, **extra):
    return {"run": "r", "iteration": iteration, "phase": "semi", "config_hash": "abc", "dataset": "d",
            "image_root": "/images", "categories": [{"id": 1, "name": "cat", "supercategory": "animal"},
                                                    {"id": 2, "name": "dog", "supercategory": "animal"}],
            "thresholds": THRESHOLDS, "dicc": {"enabled": False, "w": None}, **extra}


def _image_tables(image_id):
    q = _table().set_column(0, "image_id", pa.array([image_id] * 3, pa.int64()))
    return q, rows.build_gt_table(image_id, _gt(), (H, W)), rows.build_image_row(image_id, f"{image_id}.png", (H, W),
                                                                          has_gt=True)


def test_write_and_load_round_trip(tmp_path):
    path = store.write_records(tmp_path, 1000, *_image_tables(5), _manifest(1000))
    assert path == tmp_path / "records" / "iter_0001000"
    assert sorted(p.name for p in path.iterdir()) == ["gt.parquet", "images.parquet", "manifest.json",
                                                      "queries.parquet"]
    assert store.list_record_iterations(tmp_path) == [1000]
    rs = store.load_records(tmp_path)
    assert rs.path == path and set(MANIFEST_KEYS) <= set(rs.manifest)
    assert (rs.manifest["num_images"], rs.manifest["num_queries"], rs.manifest["has_gt"]) == (1, 3, True)
    assert list(rs.queries.columns) == QUERY_SCHEMA.names and len(rs.queries) == 3
    assert rs.gt["gt_id"].tolist() == [77, 78] and rs.images["file_name"].tolist() == ["5.png"]
    assert rs.queries["error_type"].tolist() == ["Cor", "Cor", "BG"]
    light = store.load_records(tmp_path, 1000, columns=store.SUMMARY_QUERY_COLUMNS)
    assert "unc_png" not in light.queries.columns and "mask_rle" not in light.queries.columns
    with pytest.raises(store.RecordError, match="nope"):
        store.load_records(tmp_path, columns=["c", "nope"])
    with pytest.raises(store.RecordError, match=r"available: \[1000\]"):
        store.load_records(tmp_path, 5)


def test_latest_iteration_and_empty_run(tmp_path):
    assert store.list_record_iterations(tmp_path) == []
    with pytest.raises(store.RecordError, match="no complete records"):
        store.load_records(tmp_path)
    for it in (2000, 500, 1000):
        store.write_records(tmp_path, it, *_image_tables(it), _manifest(it))
    assert store.list_record_iterations(tmp_path) == [500, 1000, 2000]
    assert store.load_records(tmp_path).manifest["iteration"] == 2000


def test_a_writer_that_fails_midway_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with store.RecordWriter(tmp_path, 1000, _manifest(1000), row_group_rows=2) as writer:
            writer.add(*_image_tables(1))   # flushed: parquet files exist in the temporary folder
            raise RuntimeError("killed")
    assert store.list_record_iterations(tmp_path) == []
    assert list((tmp_path / "records").iterdir()) == []  # the temporary folder is gone too


def test_an_unfinished_writer_is_invisible(tmp_path):
    writer = store.RecordWriter(tmp_path, 1000, _manifest(1000), row_group_rows=2)
    writer.add(*_image_tables(1))
    assert store.list_record_iterations(tmp_path) == []
    with pytest.raises(store.RecordError):
        store.load_records(tmp_path, 1000)
    writer.close()
    assert store.list_record_iterations(tmp_path) == [1000]


def test_an_existing_folder_is_replaced_whole(tmp_path):
    with store.RecordWriter(tmp_path, 1000, _manifest(1000)) as writer:
        for image_id in (1, 2, 3):
            writer.add(*_image_tables(image_id))
    (tmp_path / "records" / "iter_0001000" / "stale.txt").write_text("from the old version")
    # a failed rewrite leaves the old version as it was
    with pytest.raises(RuntimeError):
        with store.RecordWriter(tmp_path, 1000, _manifest(1000)) as writer:
            writer.add(*_image_tables(9))
            raise RuntimeError("killed")
    assert store.load_records(tmp_path, 1000).images["image_id"].tolist() == [1, 2, 3]
    store.write_records(tmp_path, 1000, *_image_tables(9), _manifest(1000))
    rs = store.load_records(tmp_path, 1000)
    assert rs.images["image_id"].tolist() == [9] and rs.manifest["num_images"] == 1
    assert not (rs.path / "stale.txt").exists()
    assert [p.name for p in (tmp_path / "records").iterdir()] == ["iter_0001000"]


def test_folders_without_manifest_and_temporary_folders_are_ignored(tmp_path):
    store.write_records(tmp_path, 1000, *_image_tables(1), _manifest(1000))
    incomplete = tmp_path / "records" / "iter_0002000"
    incomplete.mkdir()
    for name in ("queries", "gt", "images"):
        pq.write_table(store.SCHEMAS[name].empty_table(), incomplete / schema.TABLE_FILES[name])
    temporary = tmp_path / "records" / ".iter_0003000.x1y2.tmp"
    temporary.mkdir()
    (temporary / "manifest.json").write_text(json.dumps(_manifest(3000)))
    assert store.list_record_iterations(tmp_path) == [1000]
    assert store.load_records(tmp_path).manifest["iteration"] == 1000
    with pytest.raises(store.RecordError, match="2000"):
        store.load_records(tmp_path, 2000)


def test_streaming_writer_writes_row_groups(tmp_path):
    with store.RecordWriter(tmp_path, 7, _manifest(7), row_group_rows=5) as writer:
        for image_id in range(1, 5):
            writer.add(*_image_tables(image_id))   # 3 query rows each: a row group every 2 images
    f = pq.ParquetFile(tmp_path / "records" / "iter_0000007" / "queries.parquet")
    assert f.num_row_groups == 2 and f.metadata.num_rows == 12
    rs = store.load_records(tmp_path, 7)
    assert rs.queries["image_id"].tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert rs.manifest["num_queries"] == 12 and rs.manifest["num_images"] == 4 and len(rs.gt) == 8


def test_gt_free_records(tmp_path):
    q = _table(gt=None, supercategory=None)
    store.write_records(tmp_path, 1, q, rows.build_gt_table(5, None, (H, W)),
                    rows.build_image_row(5, "5.png", (H, W), has_gt=False), _manifest(1))
    rs = store.load_records(tmp_path)
    assert rs.manifest["has_gt"] is False and len(rs.gt) == 0 and list(rs.gt.columns) == GT_SCHEMA.names
    assert rs.queries["error_type"].isna().all() and (rs.queries["gt_id"] == -1).all()


def test_schema_and_manifest_errors(tmp_path):
    q, g, i = _image_tables(1)
    with pytest.raises(store.RecordError, match=r"queries.parquet.*missing columns \['c'\]"):
        store.write_records(tmp_path, 1, q.drop_columns(["c"]), g, i, _manifest(1))
    with pytest.raises(store.RecordError, match=r"wrong types.*area: int32"):
        store.write_records(tmp_path, 1, q.set_column(q.schema.get_field_index("area"), "area",
                                                  q["area"].cast(pa.int32())), g, i, _manifest(1))
    with pytest.raises(store.RecordError, match=r"gt.parquet.*unknown columns \['extra'\]"):
        store.write_records(tmp_path, 1, q, g.append_column("extra", pa.array([1, 2])), i, _manifest(1))
    with pytest.raises(store.RecordError, match="pyarrow.Table"):
        store.write_records(tmp_path, 1, q.to_pandas(), g, i, _manifest(1))
    bad = _manifest(1)
    del bad["config_hash"], bad["dataset"]
    with pytest.raises(store.RecordError, match=r"missing keys \['config_hash', 'dataset'\]"):
        store.write_records(tmp_path, 1, q, g, i, bad)
    with pytest.raises(store.RecordError, match="iteration 2 != records iteration 1"):
        store.write_records(tmp_path, 1, q, g, i, _manifest(2))
    with pytest.raises(store.RecordError, match="num_queries is 100"):
        store.write_records(tmp_path, 1, q, g, i, _manifest(1, num_queries=100))
    with pytest.raises(store.RecordError, match="thresholds"):
        store.write_records(tmp_path, 1, q, g, i, {**_manifest(1), "thresholds": {"c_t": 0.5}})
    assert store.list_record_iterations(tmp_path) == []
    assert list((tmp_path / "records").iterdir()) == []
    # reordered columns are fine: they are put in schema order
    store.write_records(tmp_path, 1, q.select(q.column_names[::-1]), g, i, _manifest(1))
    assert list(store.load_records(tmp_path).queries.columns) == QUERY_SCHEMA.names


def test_readers_see_whole_versions_while_a_writer_replaces_them(tmp_path):
    store.write_records(tmp_path, 1000, *_image_tables(1), _manifest(1000))
    stop, seen, errors = threading.Event(), set(), []

    def read():
        while not stop.is_set():
            try:
                rs = store.load_records(tmp_path, 1000, columns=["image_id"])
            except Exception as exc:  # noqa: BLE001 - any error fails the test below
                errors.append(exc)
                return
            ids = set(rs.queries["image_id"])
            # every table and the manifest come from the same version
            assert len(rs.queries) == rs.manifest["num_queries"] == 3 * len(rs.images)
            assert ids == set(rs.images["image_id"])
            seen.add(len(rs.images))

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.time() + 1.5
    n = 0
    while time.time() < deadline:
        n = n % 3 + 1
        with store.RecordWriter(tmp_path, 1000, _manifest(1000)) as writer:
            for image_id in range(1, n + 1):
                writer.add(*_image_tables(image_id))
    stop.set()
    reader.join()
    assert not errors, errors
    assert len(seen) >= 2


# --------------------------------------------------------------------------- the fabricated run


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory):
    start = time.perf_counter()
    run = fabricate_run(tmp_path_factory.mktemp("fab") / "run")
    return run, time.perf_counter() - start


def test_fabricated_run_is_complete_and_fast(fabricated):
    run, seconds = fabricated
    assert seconds < 4.0  # < 2 s on an idle machine; slack for a shared one
    assert store.list_record_iterations(run) == [500, 1000]
    rs = store.load_records(run, 500)
    cfg = load_config(run / "config.yaml")
    assert rs.manifest["config_hash"] == cfg.hash() and cfg.model.num_queries == 10
    assert len(rs.images) == 20 and len(rs.queries) == 200
    assert all((run / "images" / f).is_file() for f in rs.images["file_name"])
    assert rs.manifest["image_root"] == str((run / "images").resolve())
    assert [c["supercategory"] for c in rs.manifest["categories"]][:4] == ["animal"] * 3 + ["vehicle"]
    types = set(rs.queries["error_type"]) | set(store.load_records(run, 1000).queries["error_type"])
    assert types == set(ERROR_TYPES)
    assert rs.queries["keep_ddtf"].any() and not rs.queries["keep_ddtf"].all()
    dicc = rs.queries[rs.queries["corrected_class"] >= 0]
    assert dicc["keep_ddtf"].all() and (dicc["corrected_class"] != dicc["pred_class"]).any()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"iter", "phase", "loss", "loss_sup", "loss_unsup", "lr", "sec_per_iter"} <= set(metrics[0])
    assert {"n_queries", "n_kept_ddtf", "n_kept_coupled", "n_dicc_changed", "dicc_w"} <= set(metrics[-1])
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [e["iter"] for e in evals] == [500, 1000] and evals[1]["AP"] > evals[0]["AP"]


def test_fabricated_run_is_deterministic(fabricated, tmp_path):
    run, _ = fabricated
    again = fabricate_run(tmp_path / "run")
    for it in (500, 1000):
        a, b = store.load_records(run, it), store.load_records(again, it)
        assert a.queries.equals(b.queries) and a.gt.equals(b.gt) and a.images.equals(b.images)
    assert (run / "metrics.jsonl").read_text() == (again / "metrics.jsonl").read_text()
    assert (run / "images" / "000003.png").read_bytes() == (again / "images" / "000003.png").read_bytes()


def test_fabricated_run_without_gt_or_dicc(tmp_path):
    run = fabricate_run(tmp_path / "run", n_images=4, iterations=(100,), with_gt=False, with_dicc=False)
    rs = store.load_records(run)
    assert rs.manifest["has_gt"] is False and rs.manifest["dicc"] == {"enabled": False, "w": None}
    assert len(rs.gt) == 0 and rs.queries["error_type"].isna().all() and rs.queries["iou"].isna().all()
    assert (rs.queries["corrected_class"] == -1).all() and rs.queries["clip_top5_classes"].isna().all()


def test_fabricated_query_frame():
    frame = fabricate_query_frame(5000, num_classes=80, seed=1)
    assert list(frame.columns) == QUERY_SCHEMA.names and len(frame) == 5000
    assert frame.equals(fabricate_query_frame(5000, num_classes=80, seed=1))
    assert frame["mask_rle"].isna().all() and frame["unc_png"].isna().all()
    assert set(frame["error_type"]) == set(ERROR_TYPES)
    cor = frame[frame["error_type"] == "Cor"]
    assert (cor["pred_class"] == cor["gt_class"]).all() and (cor["iou"] > 0.5).all()
    bg = frame[frame["error_type"] == "BG"]
    assert (bg["gt_id"] == -1).all() and (bg["iou"] == 0).all()
    assert (frame["keep_ddtf"] == (frame["corrected_class"] >= 0)).all()
    assert fabricate_query_table(10).schema.equals(QUERY_SCHEMA)


def _dense_boxes(masks: np.ndarray) -> np.ndarray:
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(ys):
            boxes[i] = [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
    return boxes


def test_upsampling_and_boxes_agree_with_torch_and_dense_masks():
    import torch
    import torch.nn.functional as F

    from pldc_core.records.mask_rles import mask_rle_strings

    gen = torch.Generator().manual_seed(0)
    for q, h, w, H, W in [(1, 8, 8, 32, 32), (7, 20, 17, 80, 70), (300, 6, 5, 23, 21), (3, 1, 5, 4, 19)]:
        logits = torch.randn(q, h, w, generator=gen) * 3
        L = logits.numpy()
        strings = mask_rle_strings(L, (H, W), L.max(axis=2), L.max(axis=1))
        masks = np.stack([rle.decode_rle(s, H, W) for s in strings])
        expected = (F.interpolate(logits.double()[None], size=(H, W), mode="bilinear", align_corners=False)[0] > 0)
        np.testing.assert_array_equal(masks, expected.numpy())
        # 300 masks: past the 255 RLEs that one pycocotools area/toBbox call can count
        area, bbox = rle.rle_area_bbox([{"size": [H, W], "counts": s} for s in strings])
        assert area.tolist() == masks.sum(axis=(1, 2)).tolist()
        np.testing.assert_array_equal(bbox, _dense_boxes(masks))
    area, bbox = rle.rle_area_bbox(rle.encode_masks(np.zeros((2, 4, 4), dtype=bool)))
    assert area.tolist() == [0, 0] and not bbox.any()
    assert rle.rle_area_bbox([])[1].shape == (0, 4)


def test_uncertainty_pngs_of_a_large_image_are_encoded_in_order():
    from pldc_core.records.box_maps import BoxMaps, row_col_max

    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((11, 256, 128)) * 4).astype(np.float32)  # past the threshold for threads
    logits[3] = -20                                                         # an all-zero map
    class_logits = rng.standard_normal((11, 3)).astype(np.float32)
    maps = BoxMaps.of(logits, logits.max(axis=2), logits.max(axis=1), floor=-7.0, margin=0)
    expected = rows._box_pngs(maps, range(len(logits)))

    def pngs():
        return rows.query_columns(1, class_logits, logits, (1024, 512), thresholds=THRESHOLDS)["unc_png"]

    assert pngs() == expected
    sigma = 1 / (1 + np.exp(-logits.astype(np.float64)))
    for data, u8 in zip(expected, np.rint(255 * (1 - 2 * np.abs(sigma - 0.5)))):
        decoded = np.rint(store.decode_uncertainty({"unc_png": data, "image_id": 0}) * 255)
        assert np.abs(decoded - u8).max() <= 1  # float32 vs float64 rounding
    # chunks taken by several threads at once come out in query order
    jobs = rows._PngJobs(logits, *row_col_max(logits))
    threads = [threading.Thread(target=jobs.work) for _ in range(3)]
    for t in threads:
        t.start()
    jobs.work()
    for t in threads:
        t.join()
    assert jobs.pngs() == expected
    if hasattr(os, "fork"):  # a forked child (e.g. a data-loader worker) must not wait on the parent's threads
        pid = os.fork()
        if pid == 0:
            os._exit(0 if pngs() == expected else 3)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
