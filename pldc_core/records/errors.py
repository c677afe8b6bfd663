"""The error type of each prediction (docs/METHOD.md, Fig. 5), from classes and a mask IoU matrix."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pldc_core.records.schema import ERROR_TYPES

COR, SIM, OTH, LOC, BG, BOTH = range(len(ERROR_TYPES))
IOU_MATCH = 0.5  # "IoU > 0.5" counts as a match; exactly 0.5 does not

_TYPE_NAMES = np.asarray(ERROR_TYPES, dtype=object)


@dataclass(frozen=True)
class ErrorResult:
    """Per prediction: ``codes`` (int8, index into ``ERROR_TYPES``) and ``gt_index`` (int64,
    the GT that decided the type, ``-1`` for BG)."""

    codes: np.ndarray
    gt_index: np.ndarray

    @property
    def types(self) -> np.ndarray:
        """The type names, an object array of strings from ``ERROR_TYPES``."""
        return _TYPE_NAMES[self.codes]

    def __len__(self) -> int:
        return len(self.codes)


def supercategory_codes(supercategory: Mapping[int, str] | Sequence[str] | np.ndarray,
                        num_classes: int | None = None) -> np.ndarray:
    """An int array ``codes[class] -> supercategory number`` (``-1`` for classes not mapped).

    ``supercategory`` is a mapping ``class index -> name`` (``Categories.supercategory_of_index()``)
    or a sequence indexed by class (names or any hashable labels).
    """
    if isinstance(supercategory, Mapping):
        size = max([int(k) + 1 for k in supercategory] + [num_classes or 0])
        names = [None] * size
        for k, v in supercategory.items():
            if int(k) < 0:
                raise ValueError(f"supercategory map: negative class index {k}")
            names[int(k)] = v
    else:
        names = list(supercategory)
    known = sorted({n for n in names if n is not None}, key=str)
    number = {n: i for i, n in enumerate(known)}
    return np.asarray([number.get(n, -1) if n is not None else -1 for n in names], dtype=np.int64)


def _lookup(codes: np.ndarray, classes: np.ndarray, what: str) -> np.ndarray:
    known = (classes >= 0) & (classes < len(codes))
    known[known] = codes[classes[known]] >= 0
    if not known.all():
        missing = sorted(set(classes[~known].tolist()))
        raise ValueError(f"classify_errors: {what} class(es) {missing} have no supercategory")
    return codes[classes]


def _best(iou: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Per row, the column of the highest IoU among ``allowed`` ones (the first on ties)."""
    return np.where(allowed, iou, -np.inf).argmax(axis=1)


def classify_errors(pred_classes, gt_classes, iou, supercategory) -> ErrorResult:
    """Classify each prediction of one image into Cor/Sim/Oth/Loc/BG/Both.

    Args:
        pred_classes: ``[P]`` int, predicted class indices.
        gt_classes: ``[G]`` int, ground-truth class indices.
        iou: ``[P, G]`` float in ``[0, 1]``, mask IoU of prediction p with GT g.
        supercategory: class index -> supercategory, as a mapping (``{0: "animal", ...}``) or a
            sequence indexed by class; every class used must be mapped.

    The first rule that holds decides (docs/METHOD.md, Fig. 5), with the GT that decided it:
      Cor  - a same-class GT with IoU > 0.5          -> the same-class GT with the highest IoU
      Sim  - an other-class GT of the same supercategory with IoU > 0.5 -> the best such GT
      Oth  - any GT with IoU > 0.5                   -> the best GT
      Loc  - a same-class GT with IoU > 0            -> the best same-class GT
      BG   - IoU 0 with every GT (or no GT at all)   -> -1
      Both - the rest (only other-class GTs overlap, IoU <= 0.5) -> the best GT
    Ties go to the lowest GT index. ``G = 0`` makes everything BG; ``P = 0`` gives empty arrays.

    Returns:
        ``ErrorResult`` with ``codes`` ``[P]`` int8 (index into ``ERROR_TYPES``; ``.types`` gives
        the names) and ``gt_index`` ``[P]`` int64.
    """
    pred = np.asarray(pred_classes, dtype=np.int64).reshape(-1)
    gt = np.asarray(gt_classes, dtype=np.int64).reshape(-1)
    iou = np.asarray(iou, dtype=np.float64)
    if iou.size == 0:
        iou = iou.reshape(len(pred), len(gt))
    if iou.shape != (len(pred), len(gt)):
        raise ValueError(f"classify_errors: iou has shape {iou.shape}, expected ({len(pred)}, {len(gt)})")
    if np.isnan(iou).any():
        raise ValueError("classify_errors: iou contains NaN")
    P, G = iou.shape
    if G == 0 or P == 0:
        return ErrorResult(np.full(P, BG, dtype=np.int8), np.full(P, -1, dtype=np.int64))

    codes = supercategory_codes(supercategory)
    same_class = pred[:, None] == gt[None, :]
    same_super = _lookup(codes, pred, "predicted")[:, None] == _lookup(codes, gt, "ground-truth")[None, :]
    match = iou > IOU_MATCH
    overlap = iou > 0

    sim_allowed = match & same_super & ~same_class
    rules = [  # (code, rule holds per prediction, GT index that decides it); first rule wins
        (COR, (match & same_class).any(1), _best(iou, same_class)),
        (SIM, sim_allowed.any(1), _best(iou, sim_allowed)),
        (OTH, match.any(1), iou.argmax(1)),
        (LOC, (overlap & same_class).any(1), _best(iou, same_class)),
        (BG, ~overlap.any(1), np.full(P, -1)),
    ]
    out_codes = np.full(P, BOTH, dtype=np.int8)
    out_index = iou.argmax(1).astype(np.int64)
    decided = np.zeros(P, dtype=bool)
    for code, holds, index in rules:
        take = holds & ~decided
        out_codes[take] = code
        out_index[take] = index[take]
        decided |= take
    return ErrorResult(out_codes, out_index)
