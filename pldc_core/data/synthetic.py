"""The embedded benchmark: a small COCO-format instance segmentation dataset of textured shapes.

It is built to show the problems PL-DC addresses, on a laptop:
- 10 thing classes in 4 supercategories, with a long tail (``disk`` 34% of instances,
  ``six-point star`` 2%);
- two look-alike pairs, each inside one supercategory and each pairing a common class with a
  rarer one: disk / ellipse (aspect ratio 1.1-1.25) and square / rounded square (corner
  radius 15-30% of the half side) - the "similar objects" confusion of the paper. They differ
  only in shape detail: visible on a large object, nearly invisible on a small one;
- 3-8 instances per image, occluding each other in about two thirds of the images; small,
  medium and large objects by COCO's area limits scaled to the image size;
- random colours and textures (independent of the class, so shape is the cue), on textured,
  noisy backgrounds with unlabeled clutter strokes.

Generation is deterministic for a seed: every image is drawn from its own RNG seeded by
``(seed, split, index)``, and the class of every instance is fixed up front, so the bytes
written do not depend on the number of worker processes.
"""
from __future__ import annotations

import colorsys
import contextlib
import functools
import io
import math
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from pldc_core import atomic
from pldc_core.data.coco import DatasetError, annotation_mask, mask_to_rle
from pldc_core.structures import COCO_REFERENCE_AREA, size_category


@dataclass(frozen=True)
class ShapeClass:
    id: int
    name: str
    supercategory: str
    share: float  # target fraction of all instances
    lookalike: str | None = None


SYNTHETIC_CLASSES: tuple[ShapeClass, ...] = (
    ShapeClass(1, "disk", "round", 0.34, "ellipse"),
    ShapeClass(2, "square", "polygon", 0.16, "rounded square"),
    ShapeClass(3, "triangle", "polygon", 0.12),
    ShapeClass(4, "ellipse", "round", 0.09, "disk"),
    ShapeClass(5, "ring", "round", 0.07),
    ShapeClass(6, "cross", "stroke", 0.06),
    ShapeClass(7, "five-point star", "star", 0.05),
    ShapeClass(8, "bar", "stroke", 0.05),
    ShapeClass(9, "rounded square", "polygon", 0.04, "square"),
    ShapeClass(10, "six-point star", "star", 0.02),
)
LOOKALIKE_PAIRS: tuple[tuple[str, str], ...] = tuple(
    sorted({tuple(sorted((c.name, c.lookalike))) for c in SYNTHETIC_CLASSES if c.lookalike}))

ELLIPSE_ASPECT = (1.18, 1.38)                 # look-alike of disk: best-rotation mask IoU ~0.87-0.91
ROUNDED_SQUARE_RADIUS = (0.25, 0.4)           # corner radius / half side; look-alike of square


@dataclass(frozen=True)
class SceneSpec:
    """What a generated image holds: its classes (drawn by ``shares``), how many instances, and
    the mix of COCO size classes (limits scaled to the image, see ``size_limits``)."""

    classes: tuple[ShapeClass, ...]
    instances: tuple[int, int] = (3, 7)        # per image, uniform, inclusive
    size_mix: tuple[tuple[str, float], ...] = (("small", 0.16), ("medium", 0.46), ("large", 0.38))
    small_floor: float = 0.6                   # smallest small object, as a fraction of the small limit
    plain_fraction: float = 0.0                # share of images with untextured objects on plain backgrounds


BENCHMARK_SCENES = SceneSpec(SYNTHETIC_CLASSES)
OVERLAP_P = 0.12                              # chance that an object is placed to occlude another
MIN_VISIBLE_FRACTION = 0.4                    # an occluded object keeps at least this much
MIN_PIXELS = 8
MARKER = "generator.json"                     # written in the output folder; marks it as ours


def synthetic_categories() -> list[dict]:
    """The COCO ``categories`` list of the embedded dataset."""
    return [{"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in SYNTHETIC_CLASSES]


# ---------------------------------------------------------------------------------------------
# Shapes: unit outlines (centred at 0), rotated, scaled to a target area, rasterised.


def _circle(r: float, n: int = 64) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _star(points: int, inner: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 2 * points, endpoint=False) - np.pi / 2
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _rounded_square(radius: float, n: int = 10) -> np.ndarray:
    corners = [(1, 1, 0.0), (-1, 1, 0.5), (-1, -1, 1.0), (1, -1, 1.5)]
    pts = []
    for sx, sy, start in corners:
        t = (start + np.linspace(0, 0.5, n)) * np.pi
        cx, cy = sx * (1 - radius), sy * (1 - radius)
        pts.append(np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1))
    return np.concatenate(pts)


def _regular_polygon(sides: int) -> np.ndarray:
    return _circle(1.0, sides)


def _polyline(points: list[tuple[float, float]]) -> np.ndarray:
    return np.array(points, dtype=float)


def _arc_band(start: float, end: float, inner: float, n: int = 24) -> np.ndarray:
    """A band of the unit circle between radii ``inner`` and 1 from angle ``start`` to ``end``."""
    t = np.linspace(start, end, n)
    outer = np.stack([np.cos(t), np.sin(t)], axis=1)
    return np.concatenate([outer, inner * outer[::-1]])


def _crescent(rng: np.random.Generator, n: int = 48) -> np.ndarray:
    """The unit disk minus a disk of the same radius shifted right: an outline of two arcs."""
    shift = rng.uniform(0.7, 1.0)
    # the two circles meet at x = shift / 2
    half = math.acos(shift / 2)
    t = np.linspace(half, 2 * np.pi - half, n)
    outer = np.stack([np.cos(t), np.sin(t)], axis=1)
    u = np.linspace(np.pi + half, np.pi - half, n)  # inner arc, of the shifted circle, back to the start
    inner = np.stack([shift + np.cos(u), np.sin(u)], axis=1)
    return np.concatenate([outer, inner[1:-1]])


def _heart(n: int = 64) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y], axis=1) / 16


def _stadium(half_length: float, n: int = 16) -> np.ndarray:
    """A capsule: two half-disks of radius 1 joined by straight sides."""
    t = np.linspace(-np.pi / 2, np.pi / 2, n)
    right = np.stack([half_length + np.cos(t), np.sin(t)], axis=1)
    return np.concatenate([right, -right])


def _teardrop(n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t) * np.sin(t / 2) ** 1.5], axis=1)


# name -> (outer, hole) of one random instance, in unit coordinates centred near 0.
SHAPES = {
    # the embedded benchmark's classes
    "disk": lambda rng: (_circle(1.0), None),
    "ellipse": lambda rng: (_circle(1.0) * _aspect(rng.uniform(*ELLIPSE_ASPECT)), None),
    "ring": lambda rng: (_circle(1.0), _circle(rng.uniform(0.45, 0.62))),
    "square": lambda rng: (_rectangle(1.0, 1.0), None),
    "rounded square": lambda rng: (_rounded_square(rng.uniform(*ROUNDED_SQUARE_RADIUS)), None),
    "triangle": lambda rng: (_circle(1.0, 3) + rng.uniform(-0.1, 0.1, (3, 2)), None),
    "five-point star": lambda rng: (_star(5, rng.uniform(0.42, 0.55)), None),
    "six-point star": lambda rng: (_star(6, rng.uniform(0.42, 0.55)), None),
    "cross": lambda rng: (_cross(rng.uniform(0.28, 0.4)), None),
    "bar": lambda rng: (_rectangle(1.0, rng.uniform(0.2, 0.33)), None),
    # further shapes of the upstream corpus (pldc_core.data.upstream)
    "pentagon": lambda rng: (_regular_polygon(5), None),
    "hexagon": lambda rng: (_regular_polygon(6), None),
    "octagon": lambda rng: (_regular_polygon(8), None),
    "diamond": lambda rng: (_polyline([(0, 1), (-0.6, 0), (0, -1), (0.6, 0)]), None),
    "trapezoid": lambda rng: (_trapezoid(rng.uniform(0.3, 0.6)), None),
    "parallelogram": lambda rng: (_polyline([(-1, 0.5), (0.4, 0.5), (1, -0.5), (-0.4, -0.5)]), None),
    "semicircle": lambda rng: (_arc_band(0, np.pi, 0.0), None),
    "crescent": lambda rng: (_crescent(rng), None),
    "heart": lambda rng: (_heart(), None),
    "arrow": lambda rng: (_polyline([(1, 0), (0.2, 0.7), (0.2, 0.25), (-1, 0.25), (-1, -0.25), (0.2, -0.25),
                                     (0.2, -0.7)]), None),
    "L-shape": lambda rng: (_polyline([(-0.7, 1), (-0.2, 1), (-0.2, -0.5), (0.7, -0.5), (0.7, -1), (-0.7, -1)]), None),
    "T-shape": lambda rng: (_polyline([(-1, 1), (1, 1), (1, 0.55), (0.25, 0.55), (0.25, -1), (-0.25, -1),
                                       (-0.25, 0.55), (-1, 0.55)]), None),
    "four-point star": lambda rng: (_star(4, rng.uniform(0.3, 0.45)), None),
    "eight-point star": lambda rng: (_star(8, rng.uniform(0.55, 0.7)), None),
    "frame": lambda rng: (_rectangle(1.0, 1.0), _square_hole(rng.uniform(0.5, 0.65))),
    "capsule": lambda rng: (_stadium(rng.uniform(1.0, 1.8)), None),
    "chevron": lambda rng: (_polyline([(-1, 0.8), (0, -0.2), (1, 0.8), (1, 0.1), (0, -0.9), (-1, 0.1)]), None),
    "teardrop": lambda rng: (_teardrop(), None),
    "arc": lambda rng: (_arc_band(0, np.pi * rng.uniform(0.9, 1.3), rng.uniform(0.55, 0.7)), None),
    "kite": lambda rng: (_polyline([(0, 1), (-0.55, 0.35), (0, -1), (0.55, 0.35)]), None),
}


def _rectangle(half_width: float, half_height: float) -> np.ndarray:
    return _polyline([(half_width, half_height), (-half_width, half_height), (-half_width, -half_height),
                      (half_width, -half_height)])


def _trapezoid(bottom: float) -> np.ndarray:
    """Top side 2, bottom side ``2 * bottom``."""
    return _polyline([(-1, 0.6), (1, 0.6), (bottom, -0.6), (-bottom, -0.6)])


def _square_hole(half_side: float) -> np.ndarray:
    return _rectangle(half_side, half_side)


def _aspect(ratio: float) -> np.ndarray:
    return np.array([math.sqrt(ratio), 1 / math.sqrt(ratio)])


def _cross(w: float) -> np.ndarray:
    return _polyline([(w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w), (-w, -1),
                      (w, -1), (w, -w), (1, -w), (1, w)])


def _shape_outline(name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """``(outer, hole)`` polygons of one random instance of a shape, in unit coordinates."""
    try:
        make = SHAPES[name]
    except KeyError:
        raise ValueError(f"unknown synthetic shape {name!r}") from None
    return make(rng)


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _rasterize(polys: list[np.ndarray], hole: np.ndarray | None, height: int, width: int) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polys:
        draw.polygon([tuple(p) for p in poly], fill=1)
    if hole is not None:
        draw.polygon([tuple(p) for p in hole], fill=0)
    return np.asarray(canvas, dtype=bool)


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 (8-neighbour) binary dilation."""
    rows = mask.copy()
    rows[1:] |= mask[:-1]
    rows[:-1] |= mask[1:]
    out = rows.copy()
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out


def size_limits(height: int, width: int, small_floor: float = 0.6) -> dict[str, tuple[float, float]]:
    """Area range (pixels) drawn for each size class: COCO's limits scaled to the image; small
    objects are at least ``small_floor`` of the small limit (and 12 px), so they stay resolvable."""
    scale = height * width / COCO_REFERENCE_AREA
    small, medium = 32 ** 2 * scale, 96 ** 2 * scale
    return {"small": (min(max(12.0, small_floor * small), 0.9 * small), small),
            "medium": (small, medium),
            "large": (medium, max(1.5 * medium, 0.2 * height * width))}


# ---------------------------------------------------------------------------------------------
# Rendering


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    hsv = (rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0))
    return np.array(colorsys.hsv_to_rgb(*hsv), dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Values in about [0, 1] varying smoothly over ``cells`` grid cells (bicubic-upsampled noise)."""
    grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
    return np.asarray(Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC))


def _background(rng: np.random.Generator, height: int, width: int, plain: bool = False) -> np.ndarray:
    """Float32 ``[H, W, 3]``: two colours blended by smooth noise, an optional stripe or tile
    pattern, fine mottling and a few clutter strokes (``plain``: no pattern and no strokes)."""
    c1, c2 = _random_colour(rng), _random_colour(rng)
    blend = _smooth_noise(rng, height, width, int(rng.integers(2, 6)))
    fine = _smooth_noise(rng, height, width, max(4, width // 6)) - 0.5
    shade = fine * rng.uniform(0.05, 0.2)
    kind = 0 if plain else rng.integers(0, 3)
    if kind:
        yy = np.arange(height, dtype=np.float32)[:, None]
        xx = np.arange(width, dtype=np.float32)[None, :]
        if kind == 1:  # stripes
            theta, period = rng.uniform(0, np.pi), rng.uniform(6, 24)
            k = np.float32(2 * np.pi / period)
            pattern = np.sin(xx * (k * np.float32(np.cos(theta))) + yy * (k * np.float32(np.sin(theta))))
        else:  # tiles
            period = np.float32(rng.uniform(8, 32))
            pattern = (((xx // period) + (yy // period)) % 2) * 2 - 1
        shade += np.float32(rng.uniform(0.04, 0.12)) * pattern
    img = c2 + blend[..., None] * (c1 - c2) + shade[..., None]
    return img if plain else _draw_clutter(rng, img, height, width)


def _draw_clutter(rng: np.random.Generator, img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Unlabeled strokes: background structure a detector must learn to ignore."""
    n = int(rng.integers(0, 5))
    if n == 0:
        return img
    layer = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(layer)
    colours = []
    for k in range(1, n + 1):
        pts = [tuple(p) for p in rng.uniform(0, 1, (int(rng.integers(2, 5)), 2)) * (width, height)]
        draw.line(pts, fill=k, width=int(rng.integers(1, 4)))
        colours.append(_random_colour(rng))
    ids = np.asarray(layer)
    for k, colour in enumerate(colours, start=1):
        sel = ids == k
        img[sel] = 0.5 * img[sel] + 0.5 * colour
    return img


TEXTURES = ("plain", "striped", "checked", "gradient", "mottled")


def _texture(rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray, base: np.ndarray,
             plain: bool = False) -> tuple[np.ndarray, str]:
    """Colours of an object's pixels at (ys, xs) and the texture's name (one of TEXTURES;
    always "plain" with ``plain``)."""
    other = np.clip(base * rng.uniform(0.4, 0.8) + rng.uniform(0, 0.3, 3), 0, 1) \
        if rng.random() < 0.5 else _random_colour(rng)
    theta = rng.uniform(0, 2 * np.pi)
    u = xs * np.cos(theta) + ys * np.sin(theta)
    v = -xs * np.sin(theta) + ys * np.cos(theta)
    kind = 0 if plain else rng.integers(0, 5)
    if kind == 0:
        t = np.zeros_like(u)
    elif kind == 1:
        t = (np.sin(2 * np.pi * u / rng.uniform(3, 10)) > 0).astype(np.float32)
    elif kind == 2:
        period = rng.uniform(3, 9)
        t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    elif kind == 3:
        span = max(float(np.ptp(u)), 1.0)
        t = (u - u.min()) / span
    else:
        t = rng.random(u.shape).astype(np.float32) * 0.6
    colours = base * (1 - t[:, None]) + other * t[:, None]
    shade = 1 + rng.uniform(-0.15, 0.15) * (v - v.mean()) / max(float(np.ptp(v)), 1.0)
    return np.clip(colours * shade[:, None], 0, 1), TEXTURES[kind]


# ---------------------------------------------------------------------------------------------
# One image


@dataclass
class _Placed:
    label: int
    window: tuple[slice, slice]  # the shape's bounding box (+ margin) in the image
    shape: np.ndarray            # the whole shape inside ``window``
    visible: np.ndarray          # full-image mask of what later objects leave of it
    area: int
    centre: tuple[float, float]


def _rasterize_window(pts: np.ndarray, hole: np.ndarray | None, height: int, width: int):
    """Rasterise a shape inside its bounding box grown by 2 px (clipped to the image), which is
    the same as rasterising the whole image and cropping. Returns ``(window, mask)`` or None."""
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 3
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    offset = np.array([x0, y0])
    mask = _rasterize([pts - offset], None if hole is None else hole - offset, y1 - y0, x1 - x0)
    return (slice(y0, y1), slice(x0, x1)), mask


def _place(rng: np.random.Generator, name: str, target_area: float, placed: list[_Placed],
           occupied: np.ndarray, height: int, width: int):
    """``(window, mask)`` of one new object on top of ``placed``, or None if no valid position
    was found.

    An object either overlaps (occludes) earlier ones, leaving each at least
    MIN_VISIBLE_FRACTION of its area, or keeps at least one pixel of clearance from all of them,
    so that touching masks in the output always mean occlusion.
    """
    outer, hole = _shape_outline(name, rng)
    unit_area = _polygon_area(outer) - (_polygon_area(hole) if hole is not None else 0.0)
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    scale = math.sqrt(target_area / unit_area)
    radius = math.sqrt(target_area / math.pi)
    for _ in range(40):
        occlude = bool(placed) and rng.random() < OVERLAP_P
        if occlude:
            other = placed[int(rng.integers(len(placed)))]
            direction = rng.uniform(0, 2 * np.pi)
            dist = rng.uniform(0.4, 1.0) * (radius + math.sqrt(other.area / math.pi))
            centre = (other.centre[0] + dist * np.cos(direction), other.centre[1] + dist * np.sin(direction))
        else:
            centre = (rng.uniform(0, width), rng.uniform(0, height))
        pts = (outer @ rot.T) * scale + centre
        hole_pts = (hole @ rot.T) * scale + centre if hole is not None else None
        drawn = _rasterize_window(pts, hole_pts, height, width)
        if drawn is None:
            continue
        window, mask = drawn
        if mask.sum() < max(MIN_PIXELS, 0.6 * target_area):
            continue  # mostly outside the image
        below = occupied[window]
        if not (mask & below).any():
            if (_dilate(mask) & below).any():
                continue  # touching without overlapping
        else:
            hidden = [(p, int((p.visible[window] & mask).sum())) for p in placed]
            if any(n and p.visible.sum() - n < max(MIN_PIXELS, MIN_VISIBLE_FRACTION * p.area) for p, n in hidden):
                continue  # would hide too much of an earlier object
        return window, mask
    return None


def _render_image(task: tuple) -> tuple[int, list[dict], int]:
    """Worker: draw one image, write its PNG, return ``(image_id, annotations, dropped)``.

    Each annotation also carries ``attributes`` (the object's base colour and texture name),
    which captions are made from; writers of plain COCO files drop them."""
    folder, image_id, file_name, height, width, labels, seed, spec = task
    rng = np.random.default_rng(seed)
    limits = size_limits(height, width, spec.small_floor)
    size_names = [name for name, _ in spec.size_mix]
    size_p = np.array([p for _, p in spec.size_mix])
    size_p = size_p / size_p.sum()
    placed: list[_Placed] = []
    occupied = np.zeros((height, width), dtype=bool)
    dropped = 0
    for label in labels:
        name = spec.classes[label].name
        lo, hi = limits[size_names[int(rng.choice(len(size_names), p=size_p))]]
        target = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        drawn = None
        for _ in range(3):
            drawn = _place(rng, name, target, placed, occupied, height, width)
            if drawn is not None:
                break
            target *= 0.6
        if drawn is None:
            dropped += 1
            continue
        window, mask = drawn
        for p in placed:
            p.visible[window] &= ~mask
        visible = np.zeros((height, width), dtype=bool)
        visible[window] = mask
        ys, xs = np.nonzero(mask)
        centre = (float(xs.mean()) + window[1].start, float(ys.mean()) + window[0].start)
        placed.append(_Placed(label, window, mask, visible, int(mask.sum()), centre))
        occupied[window] |= mask

    plain = spec.plain_fraction > 0 and bool(rng.random() < spec.plain_fraction)
    img = _background(rng, height, width, plain)
    attributes = []
    for p in placed:
        ys, xs = np.nonzero(p.shape)
        ys, xs = ys + p.window[0].start, xs + p.window[1].start
        local_bg = img[p.window].reshape(-1, 3).mean(axis=0)
        base = _random_colour(rng)
        for _ in range(5):  # keep some contrast with the background behind the object
            if np.abs(base - local_bg).sum() >= 0.35:
                break
            base = _random_colour(rng)
        img[ys, xs], texture = _texture(rng, ys.astype(np.float32), xs.astype(np.float32), base, plain)
        attributes.append({"colour": [round(float(c), 3) for c in base], "texture": texture})
    # sensor-like noise: uniform, standard deviation 0.012-0.029
    img += (rng.random(img.shape, dtype=np.float32) - 0.5) * (2 * rng.uniform(0.02, 0.05))
    pixels = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    (Path(folder) / file_name).write_bytes(buf.getvalue())  # the whole folder is renamed into place

    anns = []
    for p, attrs in zip(placed, attributes):
        ys, xs = np.nonzero(p.visible)
        anns.append({"category_id": spec.classes[p.label].id, "segmentation": mask_to_rle(p.visible),
                     "area": int(p.visible.sum()),
                     "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                              int(ys.max() - ys.min() + 1)],
                     "iscrowd": 0, "attributes": attrs})
    return image_id, anns, dropped


def _plan_split(seed: list[int], n: int, min_size: int, max_size: int, spec: SceneSpec) -> list[tuple]:
    """Sizes, instance classes and RNG seeds of every image of one split.

    Class labels are dealt from an exact quota (largest remainder of share x total), so the
    class shares hold exactly before placement drops the odd instance that does not fit.
    """
    rng = np.random.default_rng(seed)
    heights = rng.integers(min_size, max_size + 1, n)
    widths = rng.integers(min_size, max_size + 1, n)
    counts = rng.integers(spec.instances[0], spec.instances[1] + 1, n)
    total = int(counts.sum())
    shares = np.array([c.share for c in spec.classes])
    shares = shares / shares.sum()
    quota = np.floor(shares * total).astype(int)
    remainder = shares * total - quota
    quota[np.argsort(-remainder, kind="stable")[: total - quota.sum()]] += 1
    labels = np.repeat(np.arange(len(spec.classes)), quota)
    rng.shuffle(labels)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [(int(heights[i]), int(widths[i]), labels[bounds[i]:bounds[i + 1]].tolist(), [*seed, i])
            for i in range(n)]


def _check_replaceable(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise DatasetError(f"{out_dir}: exists, is not empty and was not made by make-synthetic "
                           f"(no {MARKER}); refusing to replace it")


def _progress_disabled(progress: bool) -> bool:
    return not progress or os.environ.get("PLDC_NO_PROGRESS") == "1"


def generate_synthetic(out_dir: str | os.PathLike, n_train: int = 2000, n_val: int = 500,
                       min_size: int = 128, max_size: int = 160, seed: int = 0,
                       workers: int | None = None, progress: bool = True) -> dict:
    """Write the embedded dataset to ``out_dir`` (replacing an earlier one as a whole):
    ``{train,val}/NNNNNN.png`` and ``annotations/instances_{train,val}.json``.

    Returns ``{"train": {...}, "val": {...}, "seconds": float, "workers": int}`` with images,
    instances and dropped-instance counts per split. Same seed -> same bytes, whatever ``workers``.
    """
    if n_train < 1 or n_val < 0:
        raise ValueError(f"need n_train >= 1 and n_val >= 0, got {n_train}, {n_val}")
    return write_scenes(out_dir, BENCHMARK_SCENES, {"train": ([seed, 0], n_train), "val": ([seed, 1], n_val)},
                        min_size=min_size, max_size=max_size, description="PL-DC Workbench synthetic shapes",
                        marker={"generator": "pldc_core.data.synthetic", "seed": seed},
                        workers=workers, progress=progress)


def write_scenes(out_dir: str | os.PathLike, spec: SceneSpec, splits: dict[str, tuple[list[int], int]], *,
                 min_size: int, max_size: int, description: str, marker: dict,
                 extra_fields: Callable[[str, dict], dict] | None = None,
                 workers: int | None = None, progress: bool = True) -> dict:
    """Render ``splits`` (name -> (RNG seed prefix, number of images)) of ``spec``'s scenes into
    ``out_dir`` as a COCO dataset, replacing an earlier one as a whole.

    ``extra_fields(class name, attributes)`` returns fields added to each annotation (e.g. a
    caption); ``attributes`` are the object's drawn colour (RGB) and texture name."""
    if any(n < 0 for _, n in splits.values()) or not any(n for _, n in splits.values()):
        raise ValueError(f"need at least one image and no negative counts, got {splits}")
    if not 64 <= min_size <= max_size:
        raise ValueError(f"need 64 <= min_size <= max_size, got {min_size}, {max_size}")
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = max(1, int(workers))
    start = time.perf_counter()
    stats: dict = {"workers": workers}
    categories = [{"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in spec.classes]
    names = {c.id: c.name for c in spec.classes}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic.atomic_dir(out_dir))
        render = map
        if workers > 1:
            ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
            pool = stack.enter_context(ctx.Pool(workers))
            render = functools.partial(pool.imap, chunksize=8)
        for split, (seed, n) in splits.items():
            plan = _plan_split(seed, n, min_size, max_size, spec)
            (tmp / split).mkdir()
            tasks = [(str(tmp / split), i + 1, f"{i + 1:06d}.png", h, w, labels, s, spec)
                     for i, (h, w, labels, s) in enumerate(plan)]
            results = list(tqdm(render(_render_image, tasks), total=n, desc=f"{out_dir.name} {split}", unit="img",
                                disable=_progress_disabled(progress)))
            images, annotations, dropped = [], [], 0
            for (image_id, anns, n_dropped), task in zip(results, tasks):
                images.append({"id": image_id, "file_name": task[2], "height": task[3], "width": task[4]})
                for ann in anns:
                    attributes = ann.pop("attributes")
                    if extra_fields is not None:
                        ann.update(extra_fields(names[ann["category_id"]], attributes))
                    annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
                dropped += n_dropped
            coco = {"info": {"description": f"{description} ({split})",
                             "generator": {**marker, "min_size": min_size, "max_size": max_size}},
                    "images": images, "annotations": annotations, "categories": categories}
            atomic.write_json(tmp / "annotations" / f"instances_{split}.json", coco, indent=None)
            stats[split] = {"images": n, "instances": len(annotations), "dropped_instances": dropped}
        atomic.write_json(tmp / MARKER, {**marker, **{f"n_{k}": n for k, (_, n) in splits.items()},
                                         "min_size": min_size, "max_size": max_size})
    stats["seconds"] = time.perf_counter() - start
    return stats


# ---------------------------------------------------------------------------------------------
# Measured statistics (work on any CocoIndex)


SHAPE_MIN_AREA = 300          # instances smaller than this are too coarse to compare shapes
SHAPE_SAMPLES = 8             # instances per class used for the shape similarity
SHAPE_GRID = 32               # canvas side, covering +-1.15 sqrt(area) around the centroid
SHAPE_ANGLES = 48
LOOKALIKE_MIN_IOU = 0.85


def _shape_canvases(mask: np.ndarray) -> np.ndarray:
    """The mask resampled around its centroid at unit area, at SHAPE_ANGLES rotations:
    bool ``[SHAPE_ANGLES, SHAPE_GRID ** 2]`` (nearest-neighbour inverse warp)."""
    ys, xs = np.nonzero(mask)
    cy, cx, s = ys.mean(), xs.mean(), math.sqrt(len(ys))
    g = np.linspace(-1.15, 1.15, SHAPE_GRID)
    u, v = np.meshgrid(g, g, indexing="xy")
    t = np.linspace(0, 2 * np.pi, SHAPE_ANGLES, endpoint=False)[:, None, None]
    x = np.rint(cx + s * (np.cos(t) * u - np.sin(t) * v)).astype(np.int64)
    y = np.rint(cy + s * (np.sin(t) * u + np.cos(t) * v)).astype(np.int64)
    inside = (x >= 0) & (x < mask.shape[1]) & (y >= 0) & (y < mask.shape[0])
    out = np.zeros(x.shape, dtype=bool)
    out[inside] = mask[y[inside], x[inside]]
    return out.reshape(SHAPE_ANGLES, -1)


def shape_similarity(canvases: dict[int, list[np.ndarray]]) -> dict[tuple[int, int], float]:
    """Mean over instance pairs of the best IoU over rotations, for every pair of classes that
    has instances: how well one class's shape covers the other's after scaling and rotating."""
    classes = [c for c, v in canvases.items() if v]
    sim = {}
    for i, a in enumerate(classes):
        upright = np.stack([c[0] for c in canvases[a]])                     # [n_a, P]
        for b in classes[i + 1:]:
            rotated = np.stack(canvases[b])                                  # [n_b, R, P]
            inter = np.einsum("ap,brp->abr", upright.astype(np.float32), rotated.astype(np.float32))
            union = upright.sum(1)[:, None, None] + rotated.sum(2)[None] - inter
            sim[a, b] = sim[b, a] = float((inter / np.maximum(union, 1)).max(axis=2).mean())
    return sim


def dataset_stats(index, progress: bool = False) -> dict:
    """Measure what the embedded dataset promises, on any ``CocoIndex``.

    - ``class_shares``: fraction of (non-crowd) instances per class;
    - ``size_fractions``: small/medium/large by ``structures.size_category`` of each mask's area;
    - ``overlap_fraction``: fraction of images where two instance masks overlap or touch
      (8-neighbour); in the synthetic data touching masks only arise from occlusion;
    - ``nearest_shape``: for each class, the class whose shape covers it best
      (``shape_similarity`` on up to SHAPE_SAMPLES isolated, untruncated instances of at least
      SHAPE_MIN_AREA pixels per class) and that IoU;
    - ``lookalike_pairs``: classes that are each other's nearest shape with an IoU of at least
      LOOKALIKE_MIN_IOU.
    """
    names = index.categories.names
    supers = index.categories.supercategory_of_index()
    counts = np.zeros(len(names), dtype=np.int64)
    sizes = {"small": 0, "medium": 0, "large": 0}
    per_image, overlapping = [], 0
    canvases: dict[int, list[np.ndarray]] = {i: [] for i in range(len(names))}
    for image_id in tqdm(index.image_ids, desc="measuring", unit="img", disable=_progress_disabled(progress)):
        info = index.image_info(image_id)
        height, width = info["height"], info["width"]
        anns = [a for a in index.annotations(image_id) if not a.get("iscrowd", 0)]
        per_image.append(len(anns))
        masks = [annotation_mask(a["segmentation"], height, width) for a in anns]
        dilated = [_dilate(m) for m in masks]
        touching = np.zeros(len(masks), dtype=bool)
        for i in range(len(masks)):
            for j in range(i + 1, len(masks)):
                if (dilated[i] & masks[j]).any():
                    touching[i] = touching[j] = True
        overlapping += bool(touching.any())
        for ann, mask, touches in zip(anns, masks, touching):
            label = index.categories.index_of(ann["category_id"])
            counts[label] += 1
            area = int(mask.sum())
            sizes[size_category(area, height, width)] += 1
            on_border = mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
            if (area >= SHAPE_MIN_AREA and not touches and not on_border
                    and len(canvases[label]) < SHAPE_SAMPLES):
                canvases[label].append(_shape_canvases(mask))
    total = int(counts.sum())
    shares = {names[i]: (counts[i] / total if total else 0.0) for i in range(len(names))}
    order = sorted(shares, key=shares.get, reverse=True)
    return {
        "num_images": len(index.image_ids),
        "num_instances": total,
        "num_categories": len(names),
        "supercategories": {s: [names[i] for i in range(len(names)) if supers[i] == s]
                            for s in dict.fromkeys(supers.values())},
        "instances_per_image": {"mean": float(np.mean(per_image)) if per_image else 0.0,
                                "min": int(min(per_image, default=0)), "max": int(max(per_image, default=0))},
        "class_counts": {names[i]: int(counts[i]) for i in range(len(names))},
        "class_shares": shares,
        "commonest": [order[0], shares[order[0]]] if total else None,
        "rarest": [order[-1], shares[order[-1]]] if total else None,
        "size_fractions": {k: (v / total if total else 0.0) for k, v in sizes.items()},
        "overlap_fraction": overlapping / len(index.image_ids) if index.image_ids else 0.0,
        **_lookalikes(canvases, names, supers),
    }


def _lookalikes(canvases: dict[int, list[np.ndarray]], names: list[str], supers: dict[int, str]) -> dict:
    sim = shape_similarity(canvases)
    measured = [c for c, v in canvases.items() if v]
    nearest = {a: max((b for b in measured if b != a), key=lambda b: sim[a, b]) for a in measured} \
        if len(measured) > 1 else {}
    pairs = [{"classes": [names[a], names[b]], "iou": sim[a, b], "same_supercategory": supers[a] == supers[b],
              "instances_measured": [len(canvases[a]), len(canvases[b])]}
             for a, b in nearest.items() if a < b and nearest[b] == a and sim[a, b] >= LOOKALIKE_MIN_IOU]
    return {"nearest_shape": {names[a]: [names[b], sim[a, b]] for a, b in nearest.items()},
            "lookalike_pairs": pairs}


# ---------------------------------------------------------------------------------------------
# Preview


def _palette(k: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.9, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def render_preview(index, image_ids: list[int], out_path: str | os.PathLike, cols: int = 4,
                   scale: int = 2) -> Path:
    """Write a PNG grid of images, each next to a copy with its instance masks overlaid
    (outlined, tinted) and labelled with class names."""
    font = ImageFont.load_default(size=9 * scale)
    tiles = []
    for image_id in image_ids:
        info = index.image_info(image_id)
        height, width = info["height"], info["width"]
        image = (index.load_image(image_id).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        big = np.kron(image, np.ones((scale, scale, 1), dtype=np.uint8))
        overlay = big.astype(np.float32)
        labels = []
        for k, ann in enumerate(a for a in index.annotations(image_id) if not a.get("iscrowd", 0)):
            mask = np.kron(annotation_mask(ann["segmentation"], height, width),
                           np.ones((scale, scale), dtype=bool))
            colour = np.array(_palette(k), dtype=np.float32)
            overlay[mask] = 0.6 * overlay[mask] + 0.4 * colour
            overlay[_dilate(mask) & ~mask] = colour
            ys, xs = np.nonzero(mask)
            name = index.categories.items[index.categories.index_of(ann["category_id"])].name
            labels.append((int(xs.min()), int(ys.min()), name, _palette(k)))
        pair = Image.new("RGB", (2 * width * scale + 4, height * scale), (255, 255, 255))
        pair.paste(Image.fromarray(big), (0, 0))
        annotated = Image.fromarray(overlay.clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(annotated)
        for x, y, name, colour in labels:
            text_w = draw.textlength(name, font=font)
            pos = (min(x, max(0, annotated.width - text_w - 2)), max(0, y - 10 * scale))
            left, top, right, bottom = draw.textbbox(pos, name, font=font)
            draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=(0, 0, 0))
            draw.text(pos, name, fill=colour, font=font)
        pair.paste(annotated, (width * scale + 4, 0))
        tiles.append(pair)
    if not tiles:
        raise ValueError("no images to preview")
    rows = math.ceil(len(tiles) / cols)
    tile_w = max(t.width for t in tiles)
    tile_h = max(t.height for t in tiles)
    gap = 8
    sheet = Image.new("RGB", (cols * tile_w + (cols + 1) * gap, rows * tile_h + (rows + 1) * gap), (40, 40, 40))
    for n, tile in enumerate(tiles):
        r, c = divmod(n, cols)
        sheet.paste(tile, (gap + c * (tile_w + gap), gap + r * (tile_h + gap)))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=True)
    atomic.write_bytes(out_path, buf.getvalue())
    return Path(out_path)

