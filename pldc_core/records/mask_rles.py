"""The queries' masks at image resolution, as COCO RLEs, computed near each mask's edges only.

A query's mask is its logits upsampled bilinearly (half-pixel centres, as
``F.interpolate(align_corners=False)``) and thresholded at logit 0 (``sigma > 0.5``), evaluated
in double precision. Nothing is upsampled whole. An output pixel lies in a *cell* of four logits
(two rows, two columns) and is a weighted mean of them; in an output column, consecutive pixels
lie in the same or in vertically adjacent cells, which share a row of logits. So along a column
the sign can change only inside a cell whose logits are not all of one sign, and there at most
once (the column's values go linearly from the cell's upper row to its lower one): only those
cells' pixels are evaluated, and each change found is a run boundary of the RLE.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pldc_core.rle import rle_strings


@dataclass(frozen=True)
class _Axis:
    """Bilinear taps along one axis, from ``src`` logit pixels to ``dst`` output pixels."""

    tap0: np.ndarray     # [dst] first tap of each output pixel (its cell)
    tap1: np.ndarray     # [dst] second tap, min(tap0 + 1, src - 1)
    w1: np.ndarray       # [dst] float64 weight of the second tap (the first has 1 - w1)
    start: np.ndarray    # [src + 1] first output pixel of each cell -1..src-1 (-1, src-1: outside)
    stop: np.ndarray     # [src + 1] end of those pixels (empty for the two outside cells)
    stepwise: bool       # consecutive output pixels share a tap (upsampling): the edge search applies


@lru_cache(maxsize=64)
def _axis(src: int, dst: int) -> _Axis:
    pos = np.clip((np.arange(dst) + 0.5) * (src / dst) - 0.5, 0, src - 1)
    # The last pixels clamp to the last logit: cell src - 2 with weight 1 is that logit exactly.
    tap0 = np.minimum(np.floor(pos).astype(np.int64), max(src - 2, 0))
    cells = np.arange(-1, src)
    start = np.searchsorted(tap0, cells, "left")
    stop = np.searchsorted(tap0, cells, "right")
    start[0] = stop[0] = 0
    start[-1] = stop[-1] = dst
    return _Axis(tap0=tap0, tap1=np.minimum(tap0 + 1, src - 1), w1=pos - tap0, start=start, stop=stop,
                 stepwise=src >= 2 and bool((np.diff(tap0) <= 1).all()))


def _first_end(positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and end (exclusive) index of the True entries of each row of ``positive [Q, n]``."""
    return positive.argmax(1), positive.shape[1] - positive[:, ::-1].argmax(1)


def mask_rle_strings(logits: np.ndarray, image_hw: tuple[int, int], row_max: np.ndarray,
                     col_max: np.ndarray) -> list[str]:
    """COCO RLE ``counts`` strings of the masks of ``logits [Q, h, w]`` (float32) at ``image_hw``.

    ``row_max [Q, h]`` and ``col_max [Q, w]`` are the largest logit of each row and column (at
    least of the columns within the rows holding a positive logit, as ``box_maps.row_col_max``
    gives them). A query without a positive logit gets the empty mask without any work.
    """
    Q, h, w = logits.shape
    H, W = int(image_hw[0]), int(image_hw[1])
    ay, ax = _axis(h, H), _axis(w, W)
    rows, cols = row_max > 0, col_max > 0
    pr0, pr1 = _first_end(rows)
    pc0, pc1 = _first_end(cols)
    # Output pixels with a positive tap: the window; all others interpolate non-positive logits.
    X0, X1 = np.searchsorted(ax.tap0, pc0 - 1, "left"), np.searchsorted(ax.tap0, pc1 - 1, "right")
    Y0, Y1 = np.searchsorted(ay.tap0, pr0 - 1, "left"), np.searchsorted(ay.tap0, pr1 - 1, "right")
    todo = np.flatnonzero(rows.any(1) & (X1 > X0) & (Y1 > Y0))
    if ay.stepwise and w >= 2:
        edges = _cell_edges(logits, todo, pr0, pr1, pc0, pc1, ay, ax, H)
    else:  # an output column may skip logit rows (downsampling), or cells need two columns: evaluate it all
        edges = _window_edges(logits, todo, X0, X1, Y0, Y1, ay, ax, H)
    return _strings(*edges, Q, H * W)


def _b(logits: np.ndarray, q: np.ndarray, rows: np.ndarray, x: np.ndarray, ax: _Axis) -> np.ndarray:
    """Logit rows ``rows [k, n]`` of queries ``q [n]`` interpolated at output columns ``x [n]`` (float64
    ``[k, n]``; -1 for a row outside the map)."""
    Q, h, w = logits.shape
    flat = logits.reshape(-1)
    base = (q * h + np.clip(rows, 0, h - 1)) * w
    w1 = ax.w1[x]
    value = flat[base + ax.tap0[x]] * (1 - w1) + flat[base + ax.tap1[x]] * w1
    return np.where((rows >= 0) & (rows < h), value, -1.0)


def _cell_edges(logits, todo, pr0, pr1, pc0, pc1, ay: _Axis, ax: _Axis, H: int):
    """The queries and column-major positions of the run boundaries, found in the cells where an
    output column changes sign (in query, column, row order).

    Cells -1 and h - 1 stand for the rows above and below the map (logit -1): they have no pixels
    but make the boundary at the border of the image.
    """
    Q, h, w = logits.shape
    # The logit rows and columns the window taps, plus a non-positive row outside the map where
    # the window reaches its border; one canvas row per logit column (transposed), per query.
    a0, a1 = np.maximum(pr0 - 1, 0), np.minimum(pr1, h - 1)
    b0, b1 = np.maximum(pc0 - 1, 0), np.minimum(pc1, w - 1)
    top, bottom = (a0 == 0).astype(np.int64), (a1 == h - 1).astype(np.int64)
    n_rows = a1 - a0 + 1 + top + bottom
    block = np.zeros(Q + 1, dtype=np.int64)
    block[1:][todo] = (b1 - b0 + 1)[todo]
    block = np.cumsum(block)
    canvas = np.zeros((int(block[-1]) + 1, int(n_rows[todo].max(initial=1))), dtype=bool)
    for q in todo.tolist():
        np.greater(logits[q, a0[q]:a1[q] + 1, b0[q]:b1[q] + 1].T, 0,
                   out=canvas[block[q]:block[q + 1], top[q]:top[q] + a1[q] - a0[q] + 1])
    # Cells (four logits) whose logits are not all of one sign, in (query, logit column, row) order.
    across = canvas[1:] ^ canvas[:-1]
    down = canvas[:, 1:] ^ canvas[:, :-1]
    mixed = across[:, 1:] | across[:, :-1]
    mixed |= down[1:]
    mixed |= down[:-1]
    k, i = np.divmod(np.flatnonzero(mixed), mixed.shape[1])
    owner = todo[np.searchsorted(block[todo + 1], k, "right")]
    j = b0[owner] + k - block[owner]
    valid = (j < b1[owner]) & (i < n_rows[owner] - 1)
    k, q, j, r = k[valid], owner[valid], j[valid], (a0 - top)[owner[valid]] + i[valid]

    # Each cell once per output column of its logit column, in (query, column, row) order: the
    # m cells of one logit column go to kx * m + rank within that column's block.
    n_x = np.bincount(ax.tap0, minlength=w)[j]
    first_of_k = np.flatnonzero(np.r_[True, k[1:] != k[:-1]]) if len(k) else np.zeros(0, np.int64)
    m = np.diff(np.r_[first_of_k, len(k)])
    group = np.repeat(np.arange(len(m)), m)
    group_start = np.cumsum(m * n_x[first_of_k]) - m * n_x[first_of_k]
    cell = np.repeat(np.arange(len(k)), n_x)
    kx = np.arange(len(cell)) - np.repeat(np.cumsum(n_x) - n_x, n_x)
    g = group[cell]
    order = np.empty(len(cell), dtype=np.int64)
    order[group_start[g] + kx * m[g] + (cell - first_of_k[g])] = np.arange(len(cell))
    cell, kx = cell[order], kx[order]
    q, r = q[cell], r[cell]
    x = ax.start[j[cell] + 1] + kx

    # The cells the column's sign changes in; there it changes at its first pixel past the
    # point where the values cross 0 (at the cell's end if none of its pixels is past it).
    b_upper, b_lower = _b(logits, q, np.stack([r, r + 1]), x, ax)
    change = np.flatnonzero((b_upper > 0) != (b_lower > 0))
    q, r, x, b_upper, b_lower = (v.take(change) for v in (q, r, x, b_upper, b_lower))
    y0, n_pix = ay.start[r + 1], ay.stop[r + 1] - ay.start[r + 1]
    y = y0[:, None] + np.arange(int(n_pix.max(initial=0)))
    w1 = ay.w1[np.minimum(y, H - 1)]
    before = ((b_upper[:, None] * (1 - w1) + b_lower[:, None] * w1 > 0) == (b_upper > 0)[:, None])
    before &= y < (y0 + n_pix)[:, None]
    return q, x * H + y0 + before.sum(1)


def _window_edges(logits, todo, X0, X1, Y0, Y1, ay: _Axis, ax: _Axis, H: int):
    """The run boundaries of every output pixel of every query's window, column by column (as
    ``_cell_edges``); the pixels just outside a window interpolate non-positive logits."""
    q = np.repeat(todo, X1[todo] - X0[todo])
    x = np.concatenate([np.arange(X0[k], X1[k]) for k in todo]) if len(todo) else np.zeros(0, np.int64)
    length = Y1[q] - Y0[q] + 2                      # with a non-positive pixel before and after
    column = np.repeat(np.arange(len(q)), length)
    k = np.arange(len(column)) - np.repeat(np.cumsum(length) - length, length)
    y = Y0[q][column] + k - 1
    inside = (k > 0) & (k < length[column] - 1)
    yy = y[inside]
    b_upper, b_lower = _b(logits, q[column[inside]], np.stack([ay.tap0[yy], ay.tap1[yy]]), x[column[inside]], ax)
    positive = np.zeros(len(column), dtype=bool)
    positive[inside] = b_upper * (1 - ay.w1[yy]) + b_lower * ay.w1[yy] > 0
    change = np.flatnonzero((positive[1:] != positive[:-1]) & (k[1:] > 0)) + 1
    return q[column[change]], x[column[change]] * H + y[change]


def _strings(edges_q: np.ndarray, edges: np.ndarray, Q: int, total: int) -> list[str]:
    """RLE strings from the sorted sign changes of each query (column-major positions)."""
    # Changes at one position (a run that ends at the bottom of a column and one that starts at
    # the top of the next; a cell whose change falls on its end, and the next cell's at its
    # start) cancel in pairs: keep one of an odd number.
    new = np.r_[True, (edges[1:] != edges[:-1]) | (edges_q[1:] != edges_q[:-1])] if len(edges) else np.zeros(0, bool)
    first = np.flatnonzero(new)
    keep = np.zeros(len(edges), dtype=bool)
    keep[first[np.diff(np.r_[first, len(edges)]) % 2 == 1]] = True
    keep &= edges < total  # a run to the very end of the mask is closed by the end itself
    edges_q, edges = edges_q[keep], edges[keep]
    n_edges = np.bincount(edges_q, minlength=Q)
    starts = np.cumsum(n_edges + 2) - (n_edges + 2)
    points = np.empty(int((n_edges + 2).sum()), dtype=np.int64)
    points[starts] = 0
    points[starts + n_edges + 1] = total
    rank = np.arange(len(edges)) - np.repeat(np.cumsum(n_edges) - n_edges, n_edges)
    points[starts[edges_q] + 1 + rank] = edges
    counts = np.diff(points)
    counts = np.delete(counts, starts[1:] - 1)  # the step from one query's end to the next one's 0
    return rle_strings(counts, n_edges + 1)
