"""Per-checkpoint pseudo-label records: build the rows, write them atomically, read them back.

The layout and the columns are ``record_schema``'s. Writing goes through ``atomic.atomic_dir``:
the tables and, last, ``manifest.json`` are written into a hidden temporary folder that is then
renamed to ``RUN/records/iter_XXXXXXX``, so a reader (which only trusts folders holding a
manifest) sees a checkpoint's records whole or not at all, while training writes the next ones.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pycocotools.mask as mask_utils
import torch
from PIL import Image

from . import pseudo_labels as pl
from .atomic import atomic_dir, remove_abandoned_temporaries
from .record_schema import ERROR_TYPES, GT_SCHEMA, IMAGE_SCHEMA, MANIFEST_KEYS, QUERY_SCHEMA

RECORDS_DIR = "records"
TABLE_FILES = {"queries": "queries.parquet", "gt": "gt.parquet", "images": "images.parquet"}
# CLIP alone on a checkpoint's GT crops (Table II), in the run folder: `pldc clip-crops` writes it, the
# report and the app read it.
CLIP_TABLE_FILE = "clip_gt_crops.parquet"
SCHEMAS = {"queries": QUERY_SCHEMA, "gt": GT_SCHEMA, "images": IMAGE_SCHEMA}
MANIFEST_FILE = "manifest.json"
# Filled in by the writer from the tables when the caller leaves them out.
DERIVED_MANIFEST_KEYS = ("num_images", "num_queries", "has_gt", "created")
# Every query column except the two per-pixel ones; pass as ``columns`` for a light load.
SUMMARY_QUERY_COLUMNS = tuple(n for n in QUERY_SCHEMA.names if n not in ("mask_rle", "unc_png"))
# Width in mask-logit pixels (1/4 of the input) of the inner boundary band of a mask.
BOUNDARY_WIDTH = 2

_ITER_DIR = re.compile(r"^iter_(\d{7,})$")
_PYCOCOTOOLS_MAX_RLES = 255
_READ_ATTEMPTS = 6


class RecordError(ValueError):
    """Records that cannot be written or read as asked; the message names the file or key."""


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


# --------------------------------------------------------------------------- building rows


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


def _top_k(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest entries per row, descending (stable on ties)."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probs, order, axis=1)


def _png(u8: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG. OpenCV's encoder: half of Pillow's time on these small maps, which
    adds up at 20-100 queries per recorded image (imported here to keep it off the analysis path)."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(u8), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RecordError(f"could not PNG-encode an uncertainty map of shape {u8.shape}")
    return buf.tobytes()


_PNG_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (owner pid, pool): a forked child makes its own
_PNG_PARALLEL_PIXELS = 1 << 18  # below this many pixels per image, threads cost more than they save


def _pngs(u8: np.ndarray) -> list[bytes]:
    """``_png`` of each map of ``u8 [Q, h, w]``, in order. Large batches (the paper's 100 queries at
    256 px) are split over a few threads: OpenCV releases the GIL while it encodes."""
    global _PNG_POOL
    workers = min(8, os.cpu_count() or 1)
    if workers < 2 or u8.size < _PNG_PARALLEL_PIXELS or len(u8) < 2:
        return [_png(x) for x in u8]
    if _PNG_POOL is None or _PNG_POOL[0] != os.getpid():
        _PNG_POOL = (os.getpid(), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pldc-png"))
    chunks = np.array_split(np.arange(len(u8)), min(workers, len(u8)))
    parts = _PNG_POOL[1].map(lambda idx: [_png(u8[i]) for i in idx], chunks)
    return [b for part in parts for b in part]


def encode_masks(masks: np.ndarray) -> list[dict]:
    """COCO RLEs (``counts`` as a utf-8 string) of bool masks ``[K, H, W]``."""
    if len(masks) == 0:
        return []
    masks = masks.view(np.uint8) if masks.dtype == bool else masks.astype(np.uint8)
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
    for r in rles:
        r["counts"] = r["counts"].decode("utf-8")
    return rles


def _rle_columns(rles: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Area and COCO ``[x, y, w, h]`` box of COCO RLEs (``[0, 0, 0, 0]`` for an empty mask).

    Walks the runs, not the pixels: 20x faster than reducing the dense masks at ~250 px. Chunks of
    255 because pycocotools counts the RLEs of one call in a uint8 (OverflowError past 255).
    """
    if not rles:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 4), dtype=np.float32)
    areas, boxes = [], []
    for start in range(0, len(rles), _PYCOCOTOOLS_MAX_RLES):
        chunk = rles[start:start + _PYCOCOTOOLS_MAX_RLES]
        areas.append(np.asarray(mask_utils.area(chunk), dtype=np.int64).reshape(-1))
        boxes.append(np.asarray(mask_utils.toBbox(chunk), dtype=np.float32).reshape(-1, 4))
    return np.concatenate(areas), np.concatenate(boxes)


def _upsampled_masks(mask_logits: torch.Tensor, image_hw: tuple[int, int]) -> np.ndarray:
    """Binary masks ``[Q, H, W]`` of the logits bilinearly upsampled to ``image_hw`` (half-pixel
    centres, as ``F.interpolate(align_corners=False)``), thresholded at logit 0 (``sigma > 0.5``).

    OpenCV resizes each query's transposed logits (10x faster than torch here) and the threshold
    writes straight into a ``[Q, W, H]`` array, so the result is a view that is column-major per
    mask: the layout pycocotools encodes without another copy.
    """
    import cv2

    logits_t = np.ascontiguousarray(mask_logits.detach().float().cpu().numpy().transpose(0, 2, 1))  # [Q, w, h]
    H, W = int(image_hw[0]), int(image_hw[1])
    out = np.empty((len(logits_t), W, H), dtype=bool)
    for q, lt in enumerate(logits_t):  # dsize is (width, height) of the result: (H, W) here, transposed
        np.greater(cv2.resize(lt, (H, W), interpolation=cv2.INTER_LINEAR), 0, out=out[q])
    return out.transpose(0, 2, 1)


def _masked_means(u: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Mean of ``u`` over each region ``[Q, h, w]``; NaN for an empty region."""
    count = regions.sum(axis=(1, 2))
    total = (u * regions).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


def _eroded(masks: np.ndarray, width: int) -> np.ndarray:
    """``masks [Q, h, w]`` bool eroded ``width`` times by a 3x3 square, outside the map counting as mask.

    ``width`` 3x3 erosions are one erosion by a ``(2 width + 1)``-square, which OpenCV does per mask
    25x faster than scipy's iterated ``binary_erosion`` (same result, tested).
    """
    import cv2

    if masks.size == 0 or width <= 0:
        return masks.copy()
    kernel = np.ones((2 * width + 1, 2 * width + 1), dtype=np.uint8)
    src = np.ascontiguousarray(masks).view(np.uint8)
    out = np.empty_like(src)
    for q, m in enumerate(src):
        out[q] = cv2.erode(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1)
    return out.view(bool)


def uncertainty_summaries(u: np.ndarray, masks: np.ndarray, kept: np.ndarray,
                          boundary_width: int = BOUNDARY_WIDTH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean uncertainty inside each mask, on its inner boundary band, and where it overlaps a kept mask.

    ``u`` ``[Q, h, w]`` float, ``masks`` ``[Q, h, w]`` bool (both at mask-logit resolution), ``kept``
    ``[Q]`` bool. The boundary band is the mask minus its erosion by ``boundary_width`` pixels (3x3
    square): it lies inside the pseudo-mask, so "boundary" and "interior" split the pixels the
    pseudo-label claims, and it does not depend on what lies outside (a neighbour, padding). The
    image border is not a boundary (erosion treats outside the image as mask). The overlap region of
    query k is its mask where some *other* kept query's mask is set too.
    """
    band = masks & ~_eroded(masks, boundary_width)
    kept_masks = masks & kept[:, None, None]
    others = kept_masks.sum(axis=0, dtype=np.int32)[None] - kept_masks
    overlap = masks & (others > 0)
    return _masked_means(u, masks), _masked_means(u, band), _masked_means(u, overlap)


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
    if filter_name not in pl.FILTERS:
        raise RecordError(f"image {image_id}: unknown filter {filter_name!r} (one of {pl.FILTERS})")
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

    # c and the top-k come from the softmax over all N+1 logits (Eq. 3). m is computed on the
    # low-resolution logits, as training's DDTF does (pseudo_labels.make_pseudo_targets), so
    # keep_ddtf is the decision training makes. (evaluation.py scores masks upsampled to the
    # image instead; the two m differ slightly.) The upsampled mask stored as RLE may differ
    # from the low-resolution one by a few boundary pixels.
    c, labels = pl.class_quality(class_logits)
    probs = class_logits.softmax(-1)
    sigma = mask_logits.sigmoid()
    m = pl.mask_quality_from_probs(sigma)
    keep_ddtf = pl.ddtf_keep(c, m, thresholds["c_t"], thresholds["m_t"]).numpy()
    keep_coupled = pl.coupled_keep(c, m, thresholds["s_t"]).numpy()
    u = pl.uncertainty_from_probs(sigma).numpy()
    low_res_masks = (sigma > 0.5).numpy()
    c, m, labels = c.numpy(), m.numpy(), labels.numpy()
    top_classes, top_probs = _top_k(probs[:, :N].numpy(), min(top_k, N))

    masks = _upsampled_masks(mask_logits, (H, W))
    rles = encode_masks(masks)
    area, bbox = _rle_columns(rles)

    kept = {"ddtf": keep_ddtf, "coupled": keep_coupled, "none": np.ones(Q, dtype=bool)}[filter_name]
    unc_inside, unc_boundary, unc_overlap = uncertainty_summaries(u, low_res_masks, kept)
    u8 = np.rint(u * 255).astype(np.uint8)

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
        "unc_png": _pngs(u8),
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
    ``pseudo_labels.FILTERS``, default ``"ddtf"``: its kept masks define the overlap regions).
    ``supercategory`` (class index -> name) is needed with ``gt``. Without ``gt`` every GT
    column is empty (-1 / NaN / None). ``dicc``: what DICC decided, for all or some queries.
    For many images, ``query_columns`` + ``queries_table`` convert to arrow once (faster).
    """
    return queries_table([query_columns(image_id, class_logits, mask_logits, image_hw, thresholds=thresholds,
                                        gt=gt, supercategory=supercategory, dicc=dicc, top_k=top_k)])


def _match_columns(image_id: int, pred_classes: np.ndarray, rles: list[dict], gt: GroundTruth | None,
                   supercategory, image_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """The query table's GT columns: matched GT, its class, best IoU, error type (as a code)."""
    from workbench.errors import classify_errors, mask_iou_matrix

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
    area, bbox = _rle_columns(gt.rles)
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


# --------------------------------------------------------------------------- writing


def records_dir(run_dir: str | os.PathLike, iteration: int) -> Path:
    """``RUN/records/iter_XXXXXXX`` of one checkpoint."""
    return Path(run_dir) / RECORDS_DIR / f"iter_{int(iteration):07d}"


def check_table(table: pa.Table, name: str) -> pa.Table:
    """``table`` with its columns in schema order; RecordError if it does not match ``SCHEMAS[name]``."""
    schema = SCHEMAS[name]
    if isinstance(table, pa.Table) and table.schema.equals(schema):
        return table
    if not isinstance(table, pa.Table):
        raise RecordError(f"{TABLE_FILES[name]}: expected a pyarrow.Table, got {type(table).__name__}")
    missing = [n for n in schema.names if n not in table.column_names]
    extra = [n for n in table.column_names if n not in schema.names]
    wrong = [f"{f.name}: {table.schema.field(f.name).type} (expected {f.type})"
             for f in schema if f.name in table.column_names and table.schema.field(f.name).type != f.type]
    if missing or extra or wrong:
        parts = ([f"missing columns {missing}"] if missing else []) + ([f"unknown columns {extra}"] if extra else []) \
            + ([f"wrong types {wrong}"] if wrong else [])
        raise RecordError(f"{TABLE_FILES[name]}: table does not match record_schema: " + "; ".join(parts))
    table = table.select(schema.names)
    return table if table.schema.equals(schema) else table.cast(schema)


def check_manifest(manifest: Mapping, iteration: int, *, complete: bool) -> dict:
    """A copy of ``manifest`` after checking its keys; ``complete`` also requires the derived ones."""
    required = [k for k in MANIFEST_KEYS if complete or k not in DERIVED_MANIFEST_KEYS]
    missing = [k for k in required if k not in manifest]
    if missing:
        raise RecordError(f"{MANIFEST_FILE}: missing keys {missing} (record_schema.MANIFEST_KEYS)")
    if int(manifest["iteration"]) != int(iteration):
        raise RecordError(f"{MANIFEST_FILE}: iteration {manifest['iteration']} != records iteration {iteration}")
    thresholds = manifest["thresholds"]
    if not isinstance(thresholds, Mapping) or any(k not in thresholds for k in ("filter", "c_t", "m_t", "s_t")):
        raise RecordError(f"{MANIFEST_FILE}: thresholds must be a dict with filter, c_t, m_t, s_t; got {thresholds!r}")
    if not isinstance(manifest["dicc"], Mapping) or any(k not in manifest["dicc"] for k in ("enabled", "w")):
        raise RecordError(f"{MANIFEST_FILE}: dicc must be a dict with enabled, w; got {manifest['dicc']!r}")
    for i, cat in enumerate(manifest["categories"]):
        if not isinstance(cat, Mapping) or any(k not in cat for k in ("id", "name", "supercategory")):
            raise RecordError(f"{MANIFEST_FILE}: categories[{i}] must have id, name, supercategory; got {cat!r}")
    out = dict(manifest)
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RecordError(f"{MANIFEST_FILE}: not JSON-serialisable: {exc}") from None
    return out


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


class RecordWriter:
    """Stream one checkpoint's records to disk, committed atomically on ``close()``.

    ``add(queries, gt, images)`` buffers tables and writes a parquet row group whenever
    ``row_group_rows`` query rows (or ``row_group_bytes``) are buffered, so the whole table is
    never held in memory. ``close()`` writes ``manifest.json`` last and renames the temporary
    folder to ``RUN/records/iter_XXXXXXX`` (replacing an existing one whole); ``abort()``
    removes it. As a context manager it closes on success and aborts on an exception.
    ``num_images``, ``num_queries``, ``has_gt`` and ``created`` are filled in from the tables
    when the manifest leaves them out; given ones must agree.
    """

    def __init__(self, run_dir: str | os.PathLike, iteration: int, manifest: Mapping, *,
                 row_group_rows: int = 65536, row_group_bytes: int = 64 << 20):
        self.path = records_dir(run_dir, iteration)
        self.iteration = int(iteration)
        self._manifest = check_manifest(manifest, iteration, complete=False)
        self._row_group_rows, self._row_group_bytes = row_group_rows, row_group_bytes
        self._buffers: dict[str, list[pa.Table]] = {name: [] for name in SCHEMAS}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._rows = {name: 0 for name in SCHEMAS}
        self._buffered_rows = self._buffered_bytes = 0
        self._any_gt = False
        remove_abandoned_temporaries(self.path.parent)  # what a killed writer left behind
        self._commit = atomic_dir(self.path)
        self._tmp: Path | None = self._commit.__enter__()

    def add(self, queries: pa.Table | None = None, gt: pa.Table | None = None,
            images: pa.Table | None = None) -> None:
        """Append rows (any of the three tables may be None)."""
        if self._tmp is None:
            raise RecordError(f"{self.path}: writer is already closed")
        for name, table in (("queries", queries), ("gt", gt), ("images", images)):
            if table is None:
                continue
            table = check_table(table, name)
            self._buffers[name].append(table)
            self._rows[name] += table.num_rows
            if name == "queries":
                self._buffered_rows += table.num_rows
                self._buffered_bytes += table.get_total_buffer_size()
            if name == "images" and table.num_rows:
                self._any_gt |= bool(pc.any(table["has_gt"]).as_py())
        if self._buffered_rows >= self._row_group_rows or self._buffered_bytes >= self._row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        for name, tables in self._buffers.items():
            if not tables:
                continue
            table = pa.concat_tables(tables)
            if name not in self._writers:
                self._writers[name] = pq.ParquetWriter(self._tmp / TABLE_FILES[name], SCHEMAS[name])
            self._writers[name].write_table(table, row_group_size=max(table.num_rows, 1))
            tables.clear()
        self._buffered_rows = self._buffered_bytes = 0

    def _final_manifest(self) -> dict:
        manifest = dict(self._manifest)
        derived = {"num_images": self._rows["images"], "num_queries": self._rows["queries"],
                   "has_gt": self._any_gt}
        for key, value in derived.items():
            if key in manifest and manifest[key] != value and key != "has_gt":
                raise RecordError(f"{MANIFEST_FILE}: {key} is {manifest[key]!r} but the tables hold {value} rows "
                                  f"({key} counts rows; leave it out to have it filled in)")
            manifest.setdefault(key, value)
        manifest.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        return check_manifest(manifest, self.iteration, complete=True)

    def close(self) -> Path:
        """Finish the tables, write the manifest, commit; returns the records folder."""
        if self._tmp is None:
            raise RecordError(f"{self.path}: writer is already closed")
        try:
            manifest = self._final_manifest()
            self._flush()
            for name in SCHEMAS:
                writer = self._writers.pop(name, None)
                if writer is None:
                    pq.write_table(SCHEMAS[name].empty_table(), self._tmp / TABLE_FILES[name])
                else:
                    writer.close()
                _fsync(self._tmp / TABLE_FILES[name])
            with open(self._tmp / MANIFEST_FILE, "w", encoding="utf-8") as f:
                json.dump(manifest, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            self.abort()
            raise
        self._tmp = None
        self._commit.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Drop everything written so far; the records folder is left as it was."""
        if self._tmp is None:
            return
        for writer in self._writers.values():
            with contextlib.suppress(Exception):
                writer.close()
        self._writers.clear()
        self._tmp = None
        with contextlib.suppress(_Aborted):
            self._commit.__exit__(_Aborted, _Aborted(), None)

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _Aborted(Exception):
    """Thrown into ``atomic_dir`` to make it discard the temporary folder."""


def write_records(run_dir: str | os.PathLike, iteration: int, queries: pa.Table, gt: pa.Table,
                  images: pa.Table, manifest: Mapping) -> Path:
    """Write one checkpoint's records in one go (see ``RecordWriter``); returns the folder."""
    with RecordWriter(run_dir, iteration, manifest) as writer:
        writer.add(queries, gt, images)
    return writer.path


# --------------------------------------------------------------------------- reading


@dataclass
class RecordSet:
    """One checkpoint's records as DataFrames (see ``to_frame`` for the column types)."""

    queries: pd.DataFrame
    gt: pd.DataFrame
    images: pd.DataFrame
    manifest: dict
    path: Path


def list_record_iterations(run_dir: str | os.PathLike) -> list[int]:
    """Iterations with complete records (a manifest), ascending; temporary folders are ignored."""
    root = Path(run_dir) / RECORDS_DIR
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        match = _ITER_DIR.match(entry.name)
        if match and os.path.isfile(os.path.join(entry.path, MANIFEST_FILE)):
            found.append(int(match.group(1)))
    return sorted(found)


def _list_to_arrow_dtype(dtype: pa.DataType):
    if pa.types.is_list(dtype) or pa.types.is_binary(dtype):
        return pd.ArrowDtype(dtype)
    return None


def to_frame(table: pa.Table) -> pd.DataFrame:
    """The DataFrame ``load_records`` gives for a table.

    Numbers and bools are numpy columns; strings use pandas' string dtype (None stays missing);
    list and binary columns are ``pd.ArrowDtype`` (fast to load; ``s.list[0]`` takes a
    vectorised element, ``s.iloc[i]`` a Python list / bytes).
    """
    return table.to_pandas(types_mapper=_list_to_arrow_dtype, split_blocks=True, self_destruct=False)


def _read_folder(folder: Path, columns: Sequence[str] | None) -> tuple[dict, dict[str, pa.Table]]:
    """Read a records folder as one consistent version, even if it is replaced meanwhile.

    Every file is opened relative to one open handle of the folder, so all of them come from the
    same folder even if a writer renames a newer version into place between two opens; a file
    that vanished (the old version was deleted) raises FileNotFoundError and the caller retries.
    """
    use_dir_fd = os.open in os.supports_dir_fd
    dir_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if use_dir_fd else None

    def opener(name: str):
        if dir_fd is None:
            return open(folder / name, "rb")
        return os.fdopen(os.open(name, os.O_RDONLY, dir_fd=dir_fd), "rb")

    try:
        with opener(MANIFEST_FILE) as f:
            manifest = json.load(f)
        tables = {}
        for name, file_name in TABLE_FILES.items():
            cols = list(columns) if (name == "queries" and columns is not None) else None
            with opener(file_name) as f:
                tables[name] = pq.read_table(f, columns=cols)
        return manifest, tables
    finally:
        if dir_fd is not None:
            os.close(dir_fd)


def load_records(run_dir: str | os.PathLike, iteration: int | None = None,
                 columns: Sequence[str] | None = None) -> RecordSet:
    """Load one checkpoint's records (``iteration=None``: the latest complete one).

    ``columns`` selects query columns (e.g. ``SUMMARY_QUERY_COLUMNS`` skips the masks and the
    uncertainty PNGs); the gt and images tables are always whole.
    """
    if columns is not None:
        unknown = [c for c in columns if c not in QUERY_SCHEMA.names]
        if unknown:
            raise RecordError(f"{TABLE_FILES['queries']}: unknown columns {unknown}")
    for attempt in range(_READ_ATTEMPTS):
        available = list_record_iterations(run_dir)
        it = iteration if iteration is not None else (available[-1] if available else None)
        if it is None:
            raise RecordError(f"{Path(run_dir) / RECORDS_DIR}: no complete records")
        folder = records_dir(run_dir, it)
        if int(it) in available:
            try:
                manifest, tables = _read_folder(folder, columns)
            except FileNotFoundError as exc:  # replaced while being read: read the new version
                problem = f"changed while being read ({exc})"
            except (pa.ArrowInvalid, json.JSONDecodeError) as exc:
                raise RecordError(f"{folder}: unreadable records: {exc}") from exc
            else:
                return RecordSet(to_frame(tables["queries"]), to_frame(tables["gt"]), to_frame(tables["images"]),
                                 manifest, folder)
        else:
            problem = f"no complete records for iteration {it} (available: {available})"
            if not _being_replaced(folder):
                break
        time.sleep(0.01 * (attempt + 1))
    raise RecordError(f"{folder}: {problem}")


def _being_replaced(folder: Path) -> bool:
    """Whether a writer's temporary or old copy of ``folder`` exists (``atomic_dir`` names them
    ``.NAME.*``): while it swaps versions, the folder is missing for an instant."""
    try:
        return any(e.name.startswith(f".{folder.name}.") for e in os.scandir(folder.parent))
    except FileNotFoundError:
        return False


def _field(row, name: str):
    try:
        return row[name]
    except (KeyError, IndexError, TypeError):
        return getattr(row, name)


def decode_mask(row) -> np.ndarray:
    """The bool ``[H, W]`` mask of a query or GT row (a Series, dict or itertuples row)."""
    counts = _field(row, "mask_rle")
    if not isinstance(counts, (str, bytes)):
        raise RecordError(f"image {_field(row, 'image_id')}: row has no mask_rle")
    rle = {"size": [int(_field(row, "height")), int(_field(row, "width"))],
           "counts": counts.encode("utf-8") if isinstance(counts, str) else counts}
    return mask_utils.decode(rle).astype(bool)


def decode_uncertainty(row) -> np.ndarray:
    """The float32 ``[h, w]`` uncertainty map ``u`` in ``[0, 1]`` of a query row (from its PNG)."""
    data = _field(row, "unc_png")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise RecordError(f"image {_field(row, 'image_id')}: row has no unc_png")
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img, dtype=np.float32) / 255.0
