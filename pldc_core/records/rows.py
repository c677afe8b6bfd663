"""Building the pseudo-label record rows of one image from the teacher's outputs (torch, OpenCV).

The columns are ``schema``'s; ``store`` writes the tables. Reading and analysis import ``store``
alone, never this module. The dense per-query work is done inside each query's box:
``box_maps`` at mask-logit resolution, ``mask_rles`` at image resolution, ``band_png`` for the
uncertainty PNGs, which a worker thread encodes (then the uncertainty means) while the caller's
thread does the rest.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from pldc_core.method.filters import FILTERS, Thresholds, coupled_keep, ddtf_keep
from pldc_core.records.band_png import BandPngs
from pldc_core.records.box_maps import LOGIT_FLOOR, BoxMaps, row_col_max
from pldc_core.records.errors import classify_errors
from pldc_core.records.mask_rles import mask_rle_strings
from pldc_core.records.schema import ERROR_TYPES, GT_SCHEMA, IMAGE_SCHEMA, QUERY_SCHEMA
from pldc_core.records.store import RecordError
from pldc_core.rle import encode_masks, mask_iou_matrix, rle_area_bbox


# --------------------------------------------------------------------------- inputs


@dataclass
class GroundTruth:
    """The annotations of one image, read for analysis only (never for training).

    Give the masks either dense (``masks``) or as COCO RLEs (``GroundTruth.from_rles``, which
    skips decoding); ``rles`` is filled in from ``masks`` when left out.
    """

    masks: np.ndarray | torch.Tensor | None  # [G, H, W] bool at image resolution
    labels: np.ndarray | torch.Tensor  # [G] contiguous class indices
    ann_ids: np.ndarray | Sequence[int]  # [G] COCO annotation ids
    rles: list[dict] | None = None  # [G] COCO RLEs, ``counts`` as str

    def __post_init__(self) -> None:
        self.labels = _numpy(self.labels).astype(np.int64).reshape(-1)
        self.ann_ids = _numpy(self.ann_ids).astype(np.int64).reshape(-1)
        if self.masks is None and self.rles is None:
            raise RecordError("GroundTruth: give masks or rles")
        if self.masks is not None:
            self.masks = _numpy(self.masks).astype(bool, copy=False)
            if self.masks.ndim != 3 or len(self.masks) != len(self.labels):
                raise RecordError(f"GroundTruth: masks {self.masks.shape} must be [G, H, W] with G = "
                                  f"{len(self.labels)} labels")
        if self.rles is None:
            self.rles = encode_masks(self.masks)
        if not len(self.rles) == len(self.labels) == len(self.ann_ids):
            raise RecordError(f"GroundTruth: {len(self.rles)} masks, labels {self.labels.shape} and "
                              f"ann_ids {self.ann_ids.shape} must have the same length")
        sizes = {tuple(int(v) for v in r["size"]) for r in self.rles}
        if len(sizes) > 1:
            raise RecordError(f"GroundTruth: masks of different sizes {sorted(sizes)}")

    @classmethod
    def from_rles(cls, rles: list[dict], labels, ann_ids) -> "GroundTruth":
        """Ground truth from COCO RLEs (e.g. ``CocoIndex.instance_rles``), never decoded to pixels."""
        return cls(None, labels, ann_ids, rles=[_str_counts(r) for r in rles])

    @property
    def size(self) -> tuple[int, int] | None:
        """``(H, W)`` of the masks; None when there are none and no dense array says it."""
        if self.rles:
            return tuple(int(v) for v in self.rles[0]["size"])
        return tuple(self.masks.shape[1:]) if self.masks is not None else None


def _str_counts(rle: dict) -> dict:
    counts = rle["counts"]
    if isinstance(counts, list):
        raise RecordError("GroundTruth.from_rles: uncompressed RLE; convert with pycocotools.mask.frPyObjects")
    return {"size": list(rle["size"]), "counts": counts.decode("utf-8") if isinstance(counts, bytes) else counts}


@dataclass
class DiccInfo:
    """What DICC decided for some queries of one image.

    ``clip_probs`` ``[K, N]`` and ``corrected_classes`` ``[K]`` belong to the queries
    ``query_indices`` ``[K]`` (``None``: all queries, in order); ``w`` is Eq. 8's weight.
    """

    clip_probs: np.ndarray | torch.Tensor
    w: float
    corrected_classes: np.ndarray | torch.Tensor
    query_indices: np.ndarray | Sequence[int] | None = None


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def list_array(values: np.ndarray, value_type: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """An arrow list column from a ``[rows, k]`` array; rows where ``valid`` is False are null."""
    rows, k = values.shape
    if valid is None:
        valid = np.ones(rows, dtype=bool)
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(np.where(valid, k, 0), out=offsets[1:])
    flat = pa.array(values[valid].reshape(-1), type=value_type)
    return pa.ListArray.from_arrays(pa.array(offsets), flat, type=pa.list_(value_type),
                                    mask=pa.array(~valid))


def _softmax_rows(logits: torch.Tensor) -> np.ndarray:
    """``logits.softmax(-1)`` row by row: torch runs a softmax of several rows on its thread pool,
    which on a busy machine waits ~10 ms for a thread; one row at a time it does not (same values)."""
    return torch.stack([row.softmax(-1) for row in logits]).numpy()


def _top_k(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest entries per row, descending (stable on ties)."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probs, order, axis=1)


_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (owner pid, pool): a forked child makes its own
_THREADED_PIXELS = 1 << 16  # below this many mask logits per image, a thread costs more than it saves


def _pool() -> ThreadPoolExecutor | None:
    """Threads for the PNGs, one fewer than the CPUs as the caller's thread works too; None on one CPU."""
    global _POOL
    workers = min(3, (os.cpu_count() or 1) - 1)
    if workers < 1:
        return None
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pldc-rows"))
    return _POOL[1]


def _box_pngs(maps: BoxMaps, queries) -> list[bytes]:
    """The PNGs of ``queries``' ``round(255 u)`` maps: each its box, zero elsewhere."""
    h, w = maps.map_hw
    png = BandPngs()
    return [png(maps.box(q, maps.u8), int(maps.rows[q, 0]), h, int(maps.cols[q, 0]), w) for q in queries]


class _PngJobs:
    """The queries' uncertainty PNGs in chunks that whichever thread is free encodes: ``work()``
    (any thread, any number of them) encodes chunks until none is left; ``pngs()``, once every
    ``work()`` returned, gives them in query order. The first ``work()`` makes the maps: each
    query's box of logits above ``LOGIT_FLOOR`` (``round(255 u)`` is 0 elsewhere)."""

    CHUNKS = 8

    def __init__(self, logits: np.ndarray, row_max: np.ndarray, col_max: np.ndarray) -> None:
        self._logits, self._row_max, self._col_max = logits, row_max, col_max
        chunks = np.array_split(np.arange(len(logits)), self.CHUNKS)
        self._done = [[] for _ in chunks]
        self._todo = deque(enumerate(chunks))
        self._lock, self._maps_lock = threading.Lock(), threading.Lock()
        self._maps: BoxMaps | None = None

    def work(self) -> None:
        with self._maps_lock:
            if self._maps is None:
                self._maps = BoxMaps.of(self._logits, self._row_max, self._col_max, floor=LOGIT_FLOOR, margin=0)
        while True:
            with self._lock:
                if not self._todo:
                    return
                i, queries = self._todo.popleft()
            self._done[i] = _box_pngs(self._maps, queries.tolist())

    def pngs(self) -> list[bytes]:
        return [png for part in self._done for png in part]


def _pngs_then_means(jobs: _PngJobs, maps: Future) -> tuple[np.ndarray, np.ndarray]:
    """The worker thread's share: PNG chunks, then the uncertainty means inside and on the boundary
    of ``maps`` (a future the caller's thread fills meanwhile)."""
    jobs.work()
    return maps.result().inside_and_boundary()


# Columns of a table that hold a fixed-length list per row: given to ``_to_table`` as a 2-D array,
# with an optional ``<name>_valid`` bool array (rows where it is False are null).
_LIST_COLUMNS = {"top5_classes": pa.int16(), "top5_probs": pa.float32(), "bbox": pa.float32(),
                 "clip_top5_classes": pa.int16(), "clip_top5_probs": pa.float32()}
_ERROR_NAMES = pa.array(ERROR_TYPES, type=pa.string())


def _to_table(parts: Sequence[dict], schema: pa.Schema) -> pa.Table:
    """One arrow table from the column dicts of several images (numpy arrays and Python lists).

    Converting once per group of images instead of once per image matters: a table has ~30 columns
    and each conversion costs a few microseconds whatever its length.
    """
    if not parts:
        return schema.empty_table()
    arrays = []
    for field in schema:
        name = field.name
        values = [p[name] for p in parts]
        if isinstance(values[0], list):
            arrays.append(pa.array([v for vs in values for v in vs], type=field.type))
        elif name in _LIST_COLUMNS:
            valid = np.concatenate([p[f"{name}_valid"] for p in parts]) if f"{name}_valid" in parts[0] else None
            arrays.append(list_array(np.concatenate(values), _LIST_COLUMNS[name], valid))
        elif name == "error_type":  # int8 codes into ERROR_TYPES, -1 = unknown (null)
            codes = np.concatenate(values)
            arrays.append(_ERROR_NAMES.take(pa.array(codes, mask=codes < 0)))
        else:
            arrays.append(pa.array(np.concatenate(values).astype(field.type.to_pandas_dtype(), copy=False)))
    return pa.Table.from_arrays(arrays, schema=schema)


def query_columns(image_id: int, class_logits, mask_logits, image_hw: tuple[int, int], *,
                  thresholds: Mapping[str, float], gt: GroundTruth | None = None,
                  supercategory: Mapping[int, str] | Sequence[str] | None = None,
                  dicc: DiccInfo | None = None, top_k: int = 5) -> dict | None:
    """The ``QUERY_SCHEMA`` columns of one image as numpy arrays / lists (None for no queries).

    Arguments as ``build_query_table``; ``queries_table`` turns the columns of several images into
    one table.
    """
    for key in ("c_t", "m_t", "s_t"):
        if key not in thresholds:
            raise RecordError(f"image {image_id}: thresholds lack {key!r} (need c_t, m_t, s_t)")
    filter_name = thresholds.get("filter", "ddtf")
    if filter_name not in FILTERS:
        raise RecordError(f"image {image_id}: unknown filter {filter_name!r} (one of {FILTERS})")
    class_logits = torch.as_tensor(class_logits).detach().float().cpu()
    mask_logits = torch.as_tensor(mask_logits).detach().float().cpu()
    if class_logits.ndim != 2 or mask_logits.ndim != 3 or len(class_logits) != len(mask_logits):
        raise RecordError(f"image {image_id}: expected class_logits [Q, N+1] and mask_logits [Q, h, w], "
                          f"got {tuple(class_logits.shape)} and {tuple(mask_logits.shape)}")
    H, W = int(image_hw[0]), int(image_hw[1])
    Q, N = class_logits.shape[0], class_logits.shape[1] - 1
    if Q == 0:
        return None
    if gt is not None and supercategory is None:
        raise RecordError(f"image {image_id}: supercategory map is needed to classify errors against GT")

    # A worker thread encodes the uncertainty PNGs (zlib leaves the GIL) and then computes the
    # uncertainty means, while this one does the rest and helps with the PNGs left.
    logits = np.ascontiguousarray(mask_logits.numpy())
    row_max, col_max = row_col_max(logits)
    jobs, maps_ready = _PngJobs(logits, row_max, col_max), Future()
    pool = _pool() if logits.size >= _THREADED_PIXELS else None
    worker = pool.submit(_pngs_then_means, jobs, maps_ready) if pool else None
    # m is computed on the low-resolution logits, as training's DDTF does
    # (pseudo_labels.make_pseudo_targets), so keep_ddtf is the decision training makes.
    # (evaluation.py scores masks upsampled to the image instead; the two m differ slightly.)
    try:
        maps = BoxMaps.of(logits, row_max, col_max)  # the masks' boxes
        m = maps.mask_quality()  # (before two threads read the maps' cached mask pixels)
    except BaseException as exc:
        maps_ready.set_exception(exc)  # the worker must not wait for them
        raise
    maps_ready.set_result(maps)

    # c and the top-k come from the softmax over all N+1 logits (Eq. 3). The mask stored as RLE
    # (upsampled to the image) may differ from the low-resolution one by a few boundary pixels.
    probs = _softmax_rows(class_logits)
    c, labels = probs[:, :N].max(1), probs[:, :N].argmax(1)  # pseudo_labels.class_quality, on these probs
    top_classes, top_probs = _top_k(probs[:, :N], min(top_k, N))
    strings = mask_rle_strings(logits, (H, W), row_max, col_max)
    jobs.work()  # what the worker has not taken yet
    unc_inside, unc_boundary = worker.result() if worker else maps.inside_and_boundary()
    unc_pngs = jobs.pngs()
    rles = [{"size": [H, W], "counts": r} for r in strings]
    area, bbox = rle_area_bbox(rles)

    # Training drops kept pseudo-labels whose mask has at most mask_area_threshold pixels; the
    # records' flags say the same of the stored mask (area). Training measures the mask upsampled
    # to its input view, so right at the threshold the two can disagree by a pixel or two.
    run = Thresholds.of(thresholds)
    big = area > run.mask_area_threshold
    keep_ddtf = ddtf_keep(c, m, run.c_t, run.m_t) & big
    keep_coupled = coupled_keep(c, m, run.s_t) & big
    unc_overlap = maps.overlap(run.keep(c, m) & big)  # the masks of the run's pseudo-labels

    return {
        "image_id": np.full(Q, image_id, dtype=np.int64),
        "query": np.arange(Q, dtype=np.int16),
        "pred_class": labels,
        "c": c,
        "m": m,
        "s": c * m,
        "top5_classes": top_classes,
        "top5_probs": top_probs,
        "mask_rle": [r["counts"] for r in rles],
        "height": np.full(Q, H, dtype=np.int32),
        "width": np.full(Q, W, dtype=np.int32),
        "area": area,
        "bbox": bbox,
        "keep_ddtf": keep_ddtf,
        "keep_coupled": keep_coupled,
        **_match_columns(image_id, labels, rles, gt, supercategory, (H, W)),
        **_dicc_columns(image_id, dicc, Q, N, top_k),
        "unc_png": unc_pngs,
        "unc_mean_inside": unc_inside,
        "unc_mean_boundary": unc_boundary,
        "unc_mean_overlap": unc_overlap,
    }


def queries_table(parts: Sequence[dict | None]) -> pa.Table:
    """One ``QUERY_SCHEMA`` table from ``query_columns`` of several images."""
    return _to_table([p for p in parts if p is not None], QUERY_SCHEMA)


def build_query_table(image_id: int, class_logits, mask_logits, image_hw: tuple[int, int], *,
                      thresholds: Mapping[str, float], gt: GroundTruth | None = None,
                      supercategory: Mapping[int, str] | Sequence[str] | None = None,
                      dicc: DiccInfo | None = None, top_k: int = 5) -> pa.Table:
    """One row per teacher query of one image (``QUERY_SCHEMA``).

    ``class_logits`` ``[Q, N+1]`` (last = no object) and ``mask_logits`` ``[Q, h, w]`` (the
    teacher's low-resolution masks cropped to exactly the image extent, no padding), torch or
    numpy, any device. ``image_hw`` is the image size the masks are upsampled to.
    ``thresholds``: ``c_t``, ``m_t``, ``s_t`` and optionally ``filter`` (the run's filter, one of
    ``filters.FILTERS``, default ``"ddtf"``: its kept masks define the overlap regions) and
    ``mask_area_threshold`` (default 0: a mask with at most that many pixels is not kept).
    ``supercategory`` (class index -> name) is needed with ``gt``. Without ``gt`` every GT
    column is empty (-1 / NaN / None). ``dicc``: what DICC decided, for all or some queries.
    For many images, ``query_columns`` + ``queries_table`` convert to arrow once (faster).
    """
    return queries_table([query_columns(image_id, class_logits, mask_logits, image_hw, thresholds=thresholds,
                                        gt=gt, supercategory=supercategory, dicc=dicc, top_k=top_k)])


def _match_columns(image_id: int, pred_classes: np.ndarray, rles: list[dict], gt: GroundTruth | None,
                   supercategory, image_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """The query table's GT columns: matched GT, its class, best IoU, error type (as a code)."""
    Q = len(pred_classes)
    if gt is None:
        return {"gt_id": np.full(Q, -1, dtype=np.int64), "gt_class": np.full(Q, -1, dtype=np.int16),
                "iou": np.full(Q, np.nan, dtype=np.float32), "error_type": np.full(Q, -1, dtype=np.int8)}
    if len(gt.labels) and gt.size != tuple(image_hw):
        raise RecordError(f"image {image_id}: GT masks are {gt.size}, image is {tuple(image_hw)}")
    iou = mask_iou_matrix(rles, gt.rles)
    result = classify_errors(pred_classes, gt.labels, iou, supercategory)
    has = result.gt_index >= 0
    index = np.where(has, result.gt_index, 0)
    return {
        "gt_id": np.where(has, gt.ann_ids[index] if len(gt.labels) else -1, -1).astype(np.int64),
        "gt_class": np.where(has, gt.labels[index] if len(gt.labels) else -1, -1).astype(np.int16),
        # the highest IoU with any GT (Fig. 2), not necessarily the deciding GT's; 0 when G = 0
        "iou": (iou.max(axis=1) if iou.shape[1] else np.zeros(Q)).astype(np.float32),
        "error_type": result.codes.astype(np.int8),
    }


def _dicc_columns(image_id: int, dicc: DiccInfo | None, Q: int, N: int, top_k: int) -> dict[str, np.ndarray]:
    valid = np.zeros(Q, dtype=bool)
    k = min(top_k, N)
    top_classes, top_probs = np.zeros((Q, k), dtype=np.int16), np.zeros((Q, k), dtype=np.float32)
    w, corrected = np.full(Q, np.nan, dtype=np.float32), np.full(Q, -1, dtype=np.int16)
    if dicc is not None:
        clip = _numpy(dicc.clip_probs).astype(np.float32)
        corr = _numpy(dicc.corrected_classes).astype(np.int64).reshape(-1)
        idx = np.arange(Q) if dicc.query_indices is None else _numpy(dicc.query_indices).astype(np.int64).reshape(-1)
        if clip.ndim != 2 or clip.shape[1] != N or not len(clip) == len(corr) == len(idx):
            raise RecordError(f"image {image_id}: DICC clip_probs {clip.shape}, corrected_classes {corr.shape} "
                              f"and query_indices {idx.shape} must be [K, {N}], [K], [K]")
        if len(idx) and (idx.min() < 0 or idx.max() >= Q or len(np.unique(idx)) != len(idx)):
            raise RecordError(f"image {image_id}: DICC query_indices must be distinct and in [0, {Q})")
        valid[idx] = True
        top_classes[idx], top_probs[idx] = _top_k(clip, k)
        w[idx] = dicc.w
        corrected[idx] = corr
    return {"clip_top5_classes": top_classes, "clip_top5_classes_valid": valid,
            "clip_top5_probs": top_probs, "clip_top5_probs_valid": valid,
            "dicc_w": w, "corrected_class": corrected}


def gt_columns(image_id: int, gt: GroundTruth | None, image_hw: tuple[int, int]) -> dict | None:
    """The ``GT_SCHEMA`` columns of one image (None without GT instances); see ``gt_table``."""
    if gt is None or len(gt.labels) == 0:
        return None
    H, W = int(image_hw[0]), int(image_hw[1])
    if gt.size != (H, W):
        raise RecordError(f"image {image_id}: GT masks are {gt.size}, image is {(H, W)}")
    area, bbox = rle_area_bbox(gt.rles)
    G = len(gt.rles)
    return {"image_id": np.full(G, image_id, dtype=np.int64), "gt_id": gt.ann_ids, "gt_class": gt.labels,
            "area": area, "mask_rle": [r["counts"] for r in gt.rles], "height": np.full(G, H, dtype=np.int32),
            "width": np.full(G, W, dtype=np.int32), "bbox": bbox}


def gt_table(parts: Sequence[dict | None]) -> pa.Table:
    """One ``GT_SCHEMA`` table from ``gt_columns`` of several images."""
    return _to_table([p for p in parts if p is not None], GT_SCHEMA)


def build_gt_table(image_id: int, gt: GroundTruth | None, image_hw: tuple[int, int]) -> pa.Table:
    """One row per GT instance of one image (``GT_SCHEMA``); empty for ``gt=None``."""
    return gt_table([gt_columns(image_id, gt, image_hw)])


def image_columns(image_id: int, file_name: str, image_hw: tuple[int, int], *, has_gt: bool) -> dict:
    """The ``IMAGE_SCHEMA`` row of one image as columns; see ``images_table``."""
    return {"image_id": np.array([image_id], dtype=np.int64), "file_name": [str(file_name)],
            "height": np.array([image_hw[0]], dtype=np.int32), "width": np.array([image_hw[1]], dtype=np.int32),
            "has_gt": np.array([has_gt], dtype=bool)}


def images_table(parts: Sequence[dict]) -> pa.Table:
    """One ``IMAGE_SCHEMA`` table from ``image_columns`` of several images."""
    return _to_table(list(parts), IMAGE_SCHEMA)


def build_image_row(image_id: int, file_name: str, image_hw: tuple[int, int], *, has_gt: bool) -> pa.Table:
    """The one-row ``IMAGE_SCHEMA`` table of an image (``file_name`` relative to the image root)."""
    return images_table([image_columns(image_id, file_name, image_hw, has_gt=has_gt)])
