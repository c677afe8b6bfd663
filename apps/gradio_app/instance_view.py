"""Pictures of pseudo-labels: one instance over its image (mask, GT, uncertainty heat), or all of an image's.

The records keep masks as RLE and the teacher's uncertainty as a small PNG per query; only the
rows of one image are read here (a filtered parquet read), never the whole table. Images come
from the manifest's ``image_root``. Images are enlarged by an integer factor to at least
``MIN_SIDE`` pixels, so small images stay sharp and masks stay aligned to pixels.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from pldc_core.records.schema import TABLE_FILES
from pldc_core.records.store import decode_mask, decode_uncertainty, to_frame

DETAIL_COLUMNS = ["image_id", "query", "pred_class", "c", "m", "s", "mask_rle", "height", "width", "area", "bbox",
                  "unc_png", "top5_classes", "top5_probs", "clip_top5_classes", "clip_top5_probs", "dicc_w",
                  "corrected_class", "keep_ddtf", "keep_coupled", "gt_id", "gt_class", "iou", "error_type"]
MIN_SIDE = 384
PSEUDO_COLOR = (255, 140, 0)
GT_COLOR = (0, 230, 255)
OTHER_GT_COLOR = (235, 235, 235)
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def read_image_queries(records_path: str | os.PathLike, image_id: int, query: int | None = None,
                       columns: list[str] = DETAIL_COLUMNS) -> pd.DataFrame:
    """The query rows of one image (or one query of it), masks and uncertainty PNGs included."""
    filters = [("image_id", "=", int(image_id))]
    if query is not None:
        filters.append(("query", "=", int(query)))
    table = pq.read_table(Path(records_path) / TABLE_FILES["queries"], columns=columns, filters=filters)
    return to_frame(table)


def load_image(manifest: dict, images: pd.DataFrame, image_id: int) -> tuple[np.ndarray, str | None]:
    """The RGB uint8 image ``[H, W, 3]`` at the records' size, and a warning when it could not be read
    (then a grey placeholder of the recorded size is returned)."""
    row = images[images["image_id"] == int(image_id)]
    if row.empty:
        raise KeyError(f"image {image_id} is not among the recorded images")
    row = row.iloc[0]
    height, width = int(row["height"]), int(row["width"])
    path = Path(manifest.get("image_root", "")) / str(row["file_name"])
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
            if rgb.size != (width, height):
                rgb = rgb.resize((width, height), Image.BILINEAR)
            return np.asarray(rgb), None
    except (OSError, ValueError) as exc:
        return np.full((height, width, 3), 110, dtype=np.uint8), f"image not readable: {path} ({exc})"


def display_scale(height: int, width: int, min_side: int = MIN_SIDE) -> int:
    """The integer enlargement that brings the shorter side to at least ``min_side``."""
    return max(1, math.ceil(min_side / max(1, min(height, width))))


def _enlarge(a: np.ndarray, k: int) -> np.ndarray:
    return a if k == 1 else np.repeat(np.repeat(a, k, axis=0), k, axis=1)


def _contour(mask: np.ndarray, width: int) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, iterations=width, border_value=0) if mask.any() else mask


def _blend(canvas: np.ndarray, region: np.ndarray, color, alpha: float) -> None:
    canvas[region] = canvas[region] * (1 - alpha) + np.asarray(color, dtype=np.float32) * alpha


def heat_colors(u: np.ndarray) -> np.ndarray:
    """``u`` in [0, 1] as RGB floats of matplotlib's 'inferno' colour map."""
    from matplotlib import colormaps

    return colormaps["inferno"](np.clip(u, 0, 1))[..., :3].astype(np.float32) * 255


def _resize_float(u: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(u.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))


@dataclass
class Layers:
    """What ``compose_instance`` draws."""

    pseudo: bool = True
    gt: bool = True
    uncertainty: bool = False


def compose_instance(image: np.ndarray, pseudo: np.ndarray | None = None, gt: np.ndarray | None = None,
                     other_gt: list[np.ndarray] | tuple = (), uncertainty: np.ndarray | None = None,
                     layers: Layers = Layers(), min_side: int = MIN_SIDE) -> np.ndarray:
    """The image enlarged, with the uncertainty map as a heat overlay (opacity grows with u), the pseudo
    mask filled and outlined, the deciding GT outlined and the image's other GTs thinly outlined."""
    H, W = image.shape[:2]
    k = display_scale(H, W, min_side)
    canvas = _enlarge(image, k).astype(np.float32)
    if layers.uncertainty and uncertainty is not None:
        u = _resize_float(uncertainty, H * k, W * k)
        alpha = (0.85 * np.clip(u, 0, 1))[..., None]
        canvas = canvas * (1 - alpha) + heat_colors(u) * alpha
    if layers.gt:
        for other in other_gt:
            canvas[_contour(_enlarge(other, k), max(1, k // 3))] = OTHER_GT_COLOR
    if layers.pseudo and pseudo is not None:
        big = _enlarge(pseudo, k)
        _blend(canvas, big, PSEUDO_COLOR, 0.0 if layers.uncertainty else 0.35)
        canvas[_contour(big, max(2, k // 2))] = PSEUDO_COLOR
    if layers.gt and gt is not None:
        canvas[_contour(_enlarge(gt, k), max(2, k // 2))] = GT_COLOR
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def with_legend(picture: np.ndarray, items: list[tuple[tuple[int, int, int], str]], heat: bool = False) -> np.ndarray:
    """``picture`` with a strip below it naming each colour (and the uncertainty scale when ``heat``)."""
    height = 28
    strip = Image.new("RGB", (picture.shape[1], height), (250, 250, 250))
    draw = ImageDraw.Draw(strip)
    font = _font(13)
    x = 6
    for color, text in items:
        draw.rectangle([x, 8, x + 14, 20], fill=tuple(int(v) for v in color), outline=(60, 60, 60))
        draw.text((x + 19, 6), text, fill=(20, 20, 20), font=font)
        x += 27 + int(draw.textlength(text, font=font)) + 10
    if heat and x + 150 < picture.shape[1]:
        ramp = heat_colors(np.linspace(0, 1, 100))[None].repeat(12, axis=0).astype(np.uint8)
        strip.paste(Image.fromarray(ramp), (x + 60, 8))
        draw.text((x, 6), "u = 0", fill=(20, 20, 20), font=font)
        draw.text((x + 165, 6), "1", fill=(20, 20, 20), font=font)
    return np.concatenate([picture, np.asarray(strip)], axis=0)


def _clean_list(value) -> list:
    """A recorded list cell as a list; missing cells (None, NA, NaN) as []."""
    return list(value) if isinstance(value, (list, tuple, np.ndarray)) else []


def class_probabilities(row, num_classes: int) -> pd.DataFrame:
    """Per class named in the teacher's or CLIP's top-5: the teacher's probability, CLIP's, and the
    fused ``w * p_clip + (1 - w) * p_hat`` of Eq. 9 (docs/METHOD.md).

    Only the top-5 lists are recorded, so ``p_hat`` (the teacher's distribution over the real
    classes, renormalised) is approximated by renormalising the teacher's top-5, and classes
    outside a list count as 0 there; the record's ``corrected_class`` is DICC's exact decision.
    Sorted by the fused probability (or the teacher's, without DICC).
    """
    t_cls, t_p = _clean_list(row["top5_classes"]), _clean_list(row["top5_probs"])
    c_cls, c_p = _clean_list(row["clip_top5_classes"]), _clean_list(row["clip_top5_probs"])
    w = row["dicc_w"]
    w = None if pd.isna(w) else float(w)
    classes = list(dict.fromkeys([int(k) for k in t_cls + c_cls if 0 <= int(k) < max(num_classes, 1)]))
    teacher = dict(zip((int(k) for k in t_cls), (float(p) for p in t_p)))
    clip = dict(zip((int(k) for k in c_cls), (float(p) for p in c_p)))
    frame = pd.DataFrame({"class": classes, "teacher": [teacher.get(k, 0.0) for k in classes]})
    if c_cls and w is not None:
        total = sum(teacher.values()) or 1.0
        frame["clip"] = [clip.get(k, 0.0) for k in classes]
        frame["fused"] = [float(w) * clip.get(k, 0.0) + (1 - float(w)) * teacher.get(k, 0.0) / total
                          for k in classes]
        return frame.sort_values("fused", ascending=False, kind="stable").reset_index(drop=True)
    return frame.sort_values("teacher", ascending=False, kind="stable").reset_index(drop=True)


@dataclass
class InstancePicture:
    """One query drawn over its image, with its record row and what could not be drawn."""

    picture: np.ndarray
    row: pd.Series
    warnings: list[str]


def instance_picture(records_path: str | os.PathLike, manifest: dict, images: pd.DataFrame, gt: pd.DataFrame,
                     image_id: int, query: int, layers: Layers = Layers(),
                     class_names: list[str] | None = None) -> InstancePicture:
    """Read one query's mask and uncertainty, its image and GT, and draw them (see ``compose_instance``)."""
    rows = read_image_queries(records_path, image_id, query)
    if rows.empty:
        raise KeyError(f"image {image_id} query {query}: not in {records_path}")
    row = rows.iloc[0]
    image, warning = load_image(manifest, images, image_id)
    warnings = [warning] if warning else []
    pseudo = decode_mask(row) if isinstance(row["mask_rle"], str) else None
    if pseudo is None:
        warnings.append("no mask recorded for this query")
    unc = decode_uncertainty(row) if row["unc_png"] is not None and not pd.isna(row["unc_png"]) else None
    if layers.uncertainty and unc is None:
        warnings.append("no uncertainty map recorded for this query")
    image_gt = gt[gt["image_id"] == int(image_id)]
    deciding, others = None, []
    for g in image_gt.itertuples():
        if not isinstance(g.mask_rle, str):
            continue
        mask = decode_mask(g)
        if int(g.gt_id) == int(row["gt_id"]):
            deciding = mask
        else:
            others.append(mask)
    picture = compose_instance(image, pseudo, deciding, others, unc, layers)
    names = class_names or []

    def name(k):
        k = int(k)
        return names[k] if 0 <= k < len(names) else ("none" if k < 0 else str(k))

    legend = []
    if layers.pseudo:
        legend.append((PSEUDO_COLOR, f"pseudo-label: {name(row['pred_class'])}"))
    if layers.gt and deciding is not None:
        legend.append((GT_COLOR, f"its GT: {name(row['gt_class'])}"))
    if layers.gt and others:
        legend.append((OTHER_GT_COLOR, "other GT"))
    return InstancePicture(with_legend(picture, legend, heat=layers.uncertainty and unc is not None), row, warnings)


def image_picture(records_path: str | os.PathLike, manifest: dict, images: pd.DataFrame, gt: pd.DataFrame,
                  image_id: int, keep: dict[int, bool] | None = None, class_names: list[str] | None = None,
                  min_side: int = MIN_SIDE) -> tuple[np.ndarray, int]:
    """All pseudo-labels of one image that ``keep`` (query -> kept) marks, each filled in its class's
    colour and named, GT outlined in white; returns the picture and how many were drawn."""
    rows = read_image_queries(records_path, image_id, columns=["image_id", "query", "pred_class", "mask_rle",
                                                                "height", "width", "bbox", "s"])
    image, _ = load_image(manifest, images, image_id)
    H, W = image.shape[:2]
    k = display_scale(H, W, min_side)
    canvas = _enlarge(image, k).astype(np.float32)
    for g in gt[gt["image_id"] == int(image_id)].itertuples():
        if isinstance(g.mask_rle, str):
            canvas[_contour(_enlarge(decode_mask(g), k), max(1, k // 3))] = OTHER_GT_COLOR
    names = class_names or []
    chosen = rows[[bool((keep or {}).get(int(q), keep is None)) for q in rows["query"]]].sort_values("s")
    labels = []
    for r in chosen.itertuples():
        if not isinstance(r.mask_rle, str):
            continue
        color = PALETTE[int(r.pred_class) % len(PALETTE)]
        big = _enlarge(decode_mask(r), k)
        _blend(canvas, big, color, 0.4)
        canvas[_contour(big, max(2, k // 2))] = color
        x, y = float(r.bbox[0]) * k, float(r.bbox[1]) * k
        cls = int(r.pred_class)
        labels.append((x, y, color, names[cls] if 0 <= cls < len(names) else str(cls)))
    out = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    font = _font(14)
    for x, y, color, text in labels:
        box = draw.textbbox((x + 2, y + 1), text, font=font)
        draw.rectangle(box, fill=color)
        draw.text((x + 2, y + 1), text, fill=(255, 255, 255), font=font)
    return np.asarray(out), len(labels)
