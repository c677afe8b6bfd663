"""The queries' maps at mask-logit resolution, computed inside each query's box only.

What the records keep at the resolution of the mask logits depends on few pixels of each map:
the mask quality ``m`` (Eq. 4) and the means of the uncertainty ``u`` (Eq. 10) inside a mask, on
its inner boundary and where it overlaps a kept mask on the mask (logit > 0) and, for the
erosion, on what surrounds it by the boundary width; the PNG's ``round(255 u)`` is 0 where the
logit is at most ``LOGIT_FLOOR``. So each query's maps are computed on the box of the pixels that
matter (``BoxMaps.of`` with a floor and a margin); outside it they are known.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

# Below -6.93, sigma < 1/1020 and 255 u < 0.5 rounds to 0; -7 leaves a margin for float32 rounding.
LOGIT_FLOOR = -7.0
# Width in mask-logit pixels (1/4 of the input) of the inner boundary band of a mask.
BOUNDARY_WIDTH = 2
# Torch ops in pieces below its grain size (32768): one thread, no waiting on a busy pool; a
# multiple of 64 so that every piece but the last takes torch's vectorised path, as a whole map does.
_TORCH_PIECE = 32704


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """``torch.sigmoid`` of a flat float32 array (torch's, as training computes sigma)."""
    out = np.empty_like(x)
    src, dst = torch.from_numpy(x), torch.from_numpy(out)
    for start in range(0, len(x), _TORCH_PIECE):
        torch.sigmoid(src[start:start + _TORCH_PIECE], out=dst[start:start + _TORCH_PIECE])
    return out


def row_col_max(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The largest logit of each row ``[Q, h]`` and of each column ``[Q, w]`` of ``logits [Q, h, w]``.

    Columns are searched in the rows that hold a logit above ``LOGIT_FLOOR`` only (-inf when none
    does): every box lies within them. The rows' maxima come from torch in pieces (faster than
    numpy's reduction along rows, and off torch's thread pool).
    """
    Q, h, w = logits.shape
    rows = torch.from_numpy(logits).reshape(Q * h, w)
    n = max(1, _TORCH_PIECE // w)
    row_max = torch.cat([rows[i:i + n].amax(1) for i in range(0, Q * h, n)]).reshape(Q, h).numpy()
    r0, r1 = _bounds(row_max > LOGIT_FLOOR, 0)
    col_max = np.full((Q, w), -np.inf, dtype=np.float32)
    for q, a, b in zip(range(Q), r0.tolist(), r1.tolist()):
        if b > a:
            logits[q, a:b].max(axis=0, out=col_max[q])
    return row_max, col_max


def _bounds(live: np.ndarray, grow: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of the True entries of each row of ``live [Q, n]``, grown by ``grow``, clipped."""
    n = live.shape[1]
    any_ = live.any(1)
    start = np.maximum(live.argmax(1) - grow, 0)
    end = np.minimum(n - live[:, ::-1].argmax(1) + grow, n)
    return np.where(any_, start, 0), np.where(any_, end, 0)


def _sums(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Float64 sum of ``values`` over each segment ``bounds[i]:bounds[i + 1]`` (0 when empty)."""
    out = np.zeros(len(bounds) - 1)
    nonempty = np.flatnonzero(bounds[1:] > bounds[:-1])
    if len(nonempty):
        out[nonempty] = np.add.reduceat(values, bounds[nonempty], dtype=np.float64)
    return out


def _means(values: np.ndarray, bounds: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """Mean of ``values`` over each segment (``_sums``), counting the entries ``where`` says (all by
    default); NaN for a segment without such entries."""
    if where is None:
        count, total = np.diff(bounds), _sums(values, bounds)
    else:
        count, total = _sums(where.view(np.uint8), bounds), _sums(np.where(where, values, 0), bounds)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


@dataclass
class BoxMaps:
    """Every query's sigma, ``u``, ``round(255 u)`` and mask (``sigma > 0.5``) inside its box.

    The maps of query ``q`` are the flat arrays' ``offsets[q]:offsets[q + 1]``, row-major over
    its box ``rows[q, 0]:rows[q, 1]`` x ``cols[q, 0]:cols[q, 1]`` (empty for a query whose logits
    are all below ``LOGIT_FLOOR``).
    """

    map_hw: tuple[int, int]
    rows: np.ndarray      # [Q, 2] start, end
    cols: np.ndarray      # [Q, 2]
    offsets: np.ndarray   # [Q + 1]
    sigma: np.ndarray     # flat float32
    u: np.ndarray         # flat float32
    u8: np.ndarray        # flat uint8
    mask: np.ndarray      # flat bool

    @classmethod
    def of(cls, logits: np.ndarray, row_max: np.ndarray, col_max: np.ndarray, *, floor: float = 0.0,
           margin: int = BOUNDARY_WIDTH) -> "BoxMaps":
        """The maps of ``logits [Q, h, w]`` (float32) in the box of each query's logits above ``floor``,
        grown by ``margin`` (the defaults: the mask and what its erosion sees; ``LOGIT_FLOOR`` and 0:
        where ``round(255 u)`` is not 0). ``row_max``/``col_max``: as ``row_col_max`` gives them."""
        Q, h, w = logits.shape
        r0, r1 = _bounds(row_max > floor, margin)
        c0, c1 = _bounds(col_max > floor, margin)
        offsets = np.concatenate([[0], np.cumsum((r1 - r0) * (c1 - c0))])
        flat = np.concatenate([logits[q, a:b, c:d].reshape(-1) for q, (a, b, c, d) in
                               enumerate(zip(r0.tolist(), r1.tolist(), c0.tolist(), c1.tolist()))])
        sigma = _sigmoid(flat)
        # u = 1 - 2 |sigma - 0.5| and round(255 u), in float32 with the same operations as torch's
        u = np.subtract(sigma, np.float32(0.5))
        np.abs(u, out=u)
        np.multiply(u, np.float32(2), out=u)
        np.subtract(np.float32(1), u, out=u)
        u8 = np.rint(u * np.float32(255)).astype(np.uint8)
        return cls(map_hw=(h, w), rows=np.stack([r0, r1], 1), cols=np.stack([c0, c1], 1), offsets=offsets,
                   sigma=sigma, u=u, u8=u8, mask=sigma > 0.5)

    @cached_property
    def _spans(self) -> list[tuple[int, int, int, int]]:
        """Per query: start and end in the flat arrays, and the box's rows and columns (Python ints)."""
        return list(zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist(),
                        (self.rows[:, 1] - self.rows[:, 0]).tolist(), (self.cols[:, 1] - self.cols[:, 0]).tolist()))

    def box(self, q: int, flat: np.ndarray) -> np.ndarray:
        """Query ``q``'s part of a flat array, as its ``[rows, cols]`` box."""
        start, end, rows, cols = self._spans[q]
        return flat[start:end].reshape(rows, cols)

    @cached_property
    def mask_pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """The flat positions of the mask pixels, and where each query's start among them."""
        at = np.flatnonzero(self.mask)
        return at, np.searchsorted(at, self.offsets)

    def mask_quality(self) -> np.ndarray:
        """``m`` (Eq. 4): mean sigma over the mask, 0 for an empty mask (float32 ``[Q]``)."""
        at, bounds = self.mask_pixels
        return np.nan_to_num(_means(self.sigma[at], bounds), nan=0.0)

    def inside_and_boundary(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean ``u`` inside each mask and on its inner boundary band (NaN for an empty mask).

        The boundary band is the mask minus its erosion by ``BOUNDARY_WIDTH`` pixels (3x3
        square): it lies inside the pseudo-mask, so it does not depend on what lies outside (a
        neighbour, padding). The image border is not a boundary (the erosion treats outside the
        map as mask).
        """
        import cv2

        at, bounds = self.mask_pixels
        kernel = np.ones((2 * BOUNDARY_WIDTH + 1,) * 2, dtype=np.uint8)
        eroded = np.empty_like(self.mask)
        for q in np.flatnonzero(bounds[1:] > bounds[:-1]).tolist():
            # The box holds the mask with a margin of background; outside the map counts as mask.
            self.box(q, eroded)[...] = cv2.erode(self.box(q, self.mask).view(np.uint8), kernel,
                                                 borderType=cv2.BORDER_CONSTANT, borderValue=1).view(bool)
        u = self.u[at]
        return _means(u, bounds), _means(u, bounds, ~eroded[at])

    def overlap(self, kept: np.ndarray) -> np.ndarray:
        """Mean ``u`` where each mask overlaps the mask of another query that ``kept [Q]`` marks
        (NaN where it overlaps none)."""
        at, bounds = self.mask_pixels
        live = np.flatnonzero(bounds[1:] > bounds[:-1]).tolist()
        if not any(kept[q] for q in live):
            return np.full(len(bounds) - 1, np.nan, dtype=np.float32)
        kept_count = np.zeros(self.map_hw, dtype=np.int32)
        for q in live:
            if kept[q]:
                (r0, r1), (c0, c1) = self.rows[q], self.cols[q]
                kept_count[r0:r1, c0:c1] += self.box(q, self.mask)
        others = np.zeros(len(self.mask), dtype=np.int32)  # the kept masks covering a pixel, but its own
        for q in live:
            (r0, r1), (c0, c1) = self.rows[q], self.cols[q]
            np.subtract(kept_count[r0:r1, c0:c1], self.box(q, self.mask) if kept[q] else 0, out=self.box(q, others))
        return _means(self.u[at], bounds, others[at] > 0)
