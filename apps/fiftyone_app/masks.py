"""Mask data of the records in the shapes front ends draw: box crops of the masks, and one
uncertainty map per image.

``rle_crops`` decodes COCO compressed RLE (the records' ``mask_rle``) straight into the crop of
each mask's bounding box, for a whole batch at once with numpy: a FiftyOne ``Detection`` holds
its mask as that crop, and decoding whole images first (``pycocotools.mask.decode``) costs
``H * W`` per mask, about ten times the crop for a typical object.

``max_uncertainty`` is the uncertainty map shown for an image: per pixel, the largest ``u`` of
the queries given (the kept pseudo-labels, whose ``u`` weights the student's loss in PMUA).
"""
from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from pldc_core.rle import rle_run_lengths

# Crop pixels decoded at once; bounds the temporary arrays.
_CHUNK_PIXELS = 1 << 22


def rle_crops(strings: Sequence[str], heights: Sequence[int] | np.ndarray, widths: Sequence[int] | np.ndarray,
              boxes: np.ndarray) -> list[np.ndarray]:
    """The bool crop ``mask[y:y+h, x:x+w]`` of each COCO compressed RLE mask.

    ``strings[i]`` is the RLE ``counts`` of an ``heights[i] x widths[i]`` mask and ``boxes[i]`` its
    integer box ``[x, y, w, h]`` in pixels (the records' ``bbox``). A box with no area gives a
    ``(0, 0)`` array. Equal to ``pycocotools.mask.decode(rle)[y:y+h, x:x+w]``.
    """
    n = len(strings)
    boxes = np.rint(np.asarray(boxes, dtype=np.float64)).astype(np.int64).reshape(n, 4)
    heights = np.asarray(heights, dtype=np.int64).reshape(n)
    widths = np.asarray(widths, dtype=np.int64).reshape(n)
    x0, y0, w, h = boxes.T
    if n and ((x0 < 0) | (y0 < 0) | (w < 0) | (h < 0) | (x0 + w > widths) | (y0 + h > heights)).any():
        bad = int(np.flatnonzero((x0 < 0) | (y0 < 0) | (x0 + w > widths) | (y0 + h > heights) | (w < 0) | (h < 0))[0])
        raise ValueError(f"rle_crops: box {boxes[bad].tolist()} of mask {bad} is outside its "
                         f"{heights[bad]}x{widths[bad]} image")
    out: list[np.ndarray] = [np.zeros((0, 0), dtype=bool)] * n
    todo = np.flatnonzero((w > 0) & (h > 0))
    if not len(todo):
        return out
    # groups of masks whose crops hold about _CHUNK_PIXELS pixels in all
    group = np.cumsum(w[todo] * h[todo]) // _CHUNK_PIXELS
    for g in np.unique(group):
        members = todo[group == g]
        for i, crop in zip(members, _decode_group([strings[i] for i in members], heights[members], boxes[members])):
            out[i] = crop
    return out


def _decode_group(strings: list[str], heights: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    counts, runs = rle_run_lengths(strings)
    n = len(strings)
    x0, y0, w, h = boxes.T
    mask_of = np.repeat(np.arange(n), runs)
    first = np.concatenate([[0], np.cumsum(runs)[:-1]])
    j = np.arange(len(counts)) - first[mask_of]
    run_end = np.cumsum(counts)
    run_end -= np.repeat(run_end[first] - counts[first], runs)   # cumulative within each mask
    ones = np.flatnonzero((j & 1) & (counts > 0))                 # runs of ones: odd j
    start, end, owner = run_end[ones] - counts[ones], run_end[ones], mask_of[ones]
    # split the runs at column ends (column-major order), then place each piece in its crop
    H = heights[owner]
    col_first, col_last = start // H, (end - 1) // H
    pieces = col_last - col_first + 1
    owner, H = np.repeat(owner, pieces), np.repeat(H, pieces)
    start, end = np.repeat(start, pieces), np.repeat(end, pieces)
    col = np.repeat(col_first, pieces) + np.arange(len(owner)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    top, bottom = y0[owner], y0[owner] + h[owner]
    row_start = np.clip(np.maximum(start, col * H) - col * H, top, bottom)
    row_end = np.clip(np.minimum(end, (col + 1) * H) - col * H, top, bottom)
    inside = (row_end > row_start) & (col >= x0[owner]) & (col < x0[owner] + w[owner])
    owner, col, row_start, row_end = owner[inside], col[inside], row_start[inside], row_end[inside]
    size = w * h
    offset = np.concatenate([[0], np.cumsum(size)[:-1]])
    base = offset[owner] + (col - x0[owner]) * h[owner] - y0[owner]
    total = int(size.sum())
    # +1 where a piece starts, -1 where it ends; pieces never overlap, so the running sum is 0 or 1.
    # Starts are distinct and so are ends (a start may equal another piece's end: two steps).
    diff = np.zeros(total + 1, dtype=np.int8)
    diff[base + row_start] = 1
    diff[base + row_end] -= 1
    flat = np.cumsum(diff[:total], dtype=np.int8).view(bool)
    return [np.ascontiguousarray(flat[offset[i]:offset[i] + size[i]].reshape(w[i], h[i]).T) for i in range(n)]


def max_uncertainty(pngs: Sequence[bytes], shape: tuple[int, int] | None = None) -> np.ndarray | None:
    """Per pixel, the largest value of the uint8 uncertainty PNGs (the records' ``unc_png``).

    Returns a uint8 ``[h, w]`` map (``round(255 * u)``); all zeros of ``shape`` when ``pngs`` is
    empty, or None without a ``shape``. The PNGs must all have one size.
    """
    out = None
    for data in pngs:
        with Image.open(io.BytesIO(data)) as img:
            u8 = np.asarray(img, dtype=np.uint8)
        if out is None:
            out = u8.copy()
        elif u8.shape != out.shape:
            raise ValueError(f"max_uncertainty: maps of sizes {out.shape} and {u8.shape}")
        else:
            np.maximum(out, u8, out=out)
    if out is None and shape is not None:
        out = np.zeros(shape, dtype=np.uint8)
    return out
