"""The pseudo-label record: the data model shared by the engine (writer) and the workbench (reader).

A run directory holds one folder per recorded checkpoint::

    RUN/records/iter_0001000/
        queries.parquet   # one row per teacher query (every query, kept or not)
        gt.parquet        # one row per ground-truth instance of the recorded images (may be empty)
        images.parquet    # one row per recorded image
        manifest.json     # written last; a folder without it is incomplete and never read

Class columns hold contiguous class indices (``0..N-1``, see ``structures.Categories``); the
manifest's ``categories`` list gives their COCO id, name and supercategory in index order.
Missing values: ``-1`` for integer ids/classes that do not apply, ``NaN`` for floats,
``None`` for strings/lists/bytes.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

from pldc_core.method.filters import Thresholds

TABLE_FILES = {"queries": "queries.parquet", "gt": "gt.parquet", "images": "images.parquet"}
MANIFEST_FILE = "manifest.json"

ERROR_TYPES = ("Cor", "Sim", "Oth", "Loc", "BG", "Both")

QUERY_SCHEMA = pa.schema([
    ("image_id", pa.int64()),
    ("query", pa.int16()),
    ("pred_class", pa.int16()),          # argmax over the N real classes (teacher)
    ("c", pa.float32()),                 # class quality (Eq. 3)
    ("m", pa.float32()),                 # mask quality (Eq. 4) of the mask-logit resolution, as training's
    ("s", pa.float32()),                 # c * m
    ("top5_classes", pa.list_(pa.int16())),   # min(5, N) classes, most probable first
    ("top5_probs", pa.list_(pa.float32())),   # softmax over N+1, real classes only, descending
    ("mask_rle", pa.string()),           # COCO RLE "counts" (compressed string) at image resolution
    ("height", pa.int32()),              # image height/width the RLE refers to
    ("width", pa.int32()),
    ("area", pa.int64()),                # pixels of the binary mask (sigma > 0.5)
    ("bbox", pa.list_(pa.float32())),    # COCO [x, y, w, h] of the mask; [0,0,0,0] when empty
    ("keep_ddtf", pa.bool_()),           # c >= c_t and m >= m_t at the run's thresholds, and area >
                                         # the run's mask_area_threshold (as training drops smaller masks)
    ("keep_coupled", pa.bool_()),        # s >= s_t, and the same area rule
    ("gt_id", pa.int64()),               # annotation id of the GT that decided error_type (see
                                         # records.errors.classify_errors); -1 for BG, or GT unknown
    ("gt_class", pa.int16()),            # class index of that GT, -1 when none
    ("iou", pa.float32()),               # highest mask IoU with any GT of the image (Fig. 2; the GT
                                         # may differ from gt_id's); 0 if the image has no GT
                                         # instance; NaN when GT is unknown
    ("error_type", pa.string()),         # one of ERROR_TYPES; None when GT is unknown
    ("clip_top5_classes", pa.list_(pa.int16())),  # None where DICC did not run
    ("clip_top5_probs", pa.list_(pa.float32())),
    ("dicc_w", pa.float32()),            # NaN where DICC did not run
    ("corrected_class", pa.int16()),     # DICC's class, -1 where DICC did not run
    ("unc_png", pa.binary()),            # uint8 PNG of round(255 * u), u = 1 - 2|sigma - 0.5|, at mask-logit
                                         # resolution (cropped to the image); the unc_mean_* use that
                                         # resolution's mask sigma > 0.5 and the exact u
    ("unc_mean_inside", pa.float32()),   # mean u inside the mask (NaN for an empty mask)
    ("unc_mean_boundary", pa.float32()), # mean u on the mask's inner boundary band: the mask minus its
                                         # erosion by 2 pixels (NaN for an empty mask)
    ("unc_mean_overlap", pa.float32()),  # mean u where this mask overlaps another query's mask kept by
                                         # the run's filter (thresholds.filter, with the area rule) (NaN if none)
])

GT_SCHEMA = pa.schema([
    ("image_id", pa.int64()),
    ("gt_id", pa.int64()),
    ("gt_class", pa.int16()),
    ("area", pa.int64()),
    ("mask_rle", pa.string()),
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("bbox", pa.list_(pa.float32())),
])

IMAGE_SCHEMA = pa.schema([
    ("image_id", pa.int64()),
    ("file_name", pa.string()),          # relative to the manifest's image_root
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("has_gt", pa.bool_()),              # False for images whose annotations are unknown
])

# Keys every manifest.json carries.
MANIFEST_KEYS = (
    "run",            # run name
    "iteration",      # training iteration of the checkpoint
    "phase",          # "burn_in" or "semi"
    "config_hash",    # sha256 of the resolved config (first 12 hex chars)
    "dataset",        # dataset name
    "image_root",     # absolute folder the images' file_name is relative to
    "categories",     # [{"id", "name", "supercategory"}] in class-index order
    "thresholds",     # {"filter": "ddtf"|"coupled", "c_t", "m_t", "s_t", "mask_area_threshold"} (the last
                      # absent in records written before it: no area rule, 0)
    "dicc",           # {"enabled": bool, "w": float|None}
    "num_images",     # rows of images.parquet  } filled in by records.store's writer
    "num_queries",    # rows of queries.parquet } when left out
    "has_gt",         # some recorded image has known GT (default: from images.parquet)
    "created",        # ISO timestamp (UTC; filled in by the writer when left out)
)
# Optional: "teacher_flip" (bool, pldc.teacher_flip; records written before it lack it: false).


@dataclass(frozen=True)
class Manifest:
    """A records folder's ``manifest.json`` with types (``RecordSet.info``); keys that records written
    earlier lack take the defaults of ``of``."""

    run: str
    iteration: int
    phase: str
    dataset: str
    image_root: str
    categories: tuple[dict, ...]   # {"id", "name", "supercategory"} in class-index order
    thresholds: Thresholds
    dicc_enabled: bool
    dicc_w: float | None
    num_images: int | None         # None when the manifest does not say
    has_gt: bool
    teacher_flip: bool = False     # the teacher also labelled the mirrored images (pldc.teacher_flip)

    @classmethod
    def of(cls, manifest: Mapping) -> "Manifest":
        dicc = manifest.get("dicc") or {}
        return cls(run=str(manifest.get("run", "")), iteration=int(manifest.get("iteration", -1)),
                   phase=str(manifest.get("phase", "")), dataset=str(manifest.get("dataset", "")),
                   image_root=str(manifest.get("image_root", "")),
                   categories=tuple(manifest.get("categories") or ()),
                   thresholds=Thresholds.of_manifest(manifest), dicc_enabled=bool(dicc.get("enabled", False)),
                   dicc_w=dicc.get("w"),
                   num_images=int(manifest["num_images"]) if manifest.get("num_images") is not None else None,
                   has_gt=bool(manifest.get("has_gt", False)),
                   teacher_flip=bool(manifest.get("teacher_flip", False)))

    @property
    def class_names(self) -> list[str]:
        """The class names in index order ([] when the manifest lists no categories)."""
        return [str(c["name"]) for c in self.categories]
