"""The query rows computed the slow way, over whole maps: the reference the box-wise rows are tested against.

This is how ``rows.query_columns`` computed the dense columns before the work moved into each
query's box (OpenCV upsampling of every map to the image, whole-map sigmoid, erosion and means,
one PNG per map), plus the mask-area rule of the run's thresholds applied to the keep flags.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from pldc_core.method import pseudo_labels as pl
from pldc_core.method.filters import Thresholds, coupled_keep, ddtf_keep
from pldc_core.records import rows
from pldc_core.rle import encode_masks, rle_area_bbox

BOUNDARY_WIDTH = 2


def upsampled_masks(mask_logits: torch.Tensor, image_hw: tuple[int, int]) -> np.ndarray:
    """``[Q, H, W]`` bool: every map resized by OpenCV (bilinear, half-pixel centres), logit > 0."""
    logits_t = np.ascontiguousarray(mask_logits.detach().float().cpu().numpy().transpose(0, 2, 1))
    H, W = int(image_hw[0]), int(image_hw[1])
    out = np.empty((len(logits_t), W, H), dtype=bool)
    for q, lt in enumerate(logits_t):
        np.greater(cv2.resize(lt, (H, W), interpolation=cv2.INTER_LINEAR), 0, out=out[q])
    return out.transpose(0, 2, 1)


def eroded(masks: np.ndarray, width: int) -> np.ndarray:
    """``masks [Q, h, w]`` eroded by a ``(2 width + 1)``-square, outside the map counting as mask."""
    kernel = np.ones((2 * width + 1, 2 * width + 1), dtype=np.uint8)
    src = np.ascontiguousarray(masks).view(np.uint8)
    out = np.empty_like(src)
    for q, m in enumerate(src):
        out[q] = cv2.erode(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1)
    return out.view(bool)


def masked_means(u: np.ndarray, regions: np.ndarray) -> np.ndarray:
    count = regions.sum(axis=(1, 2))
    total = (u * regions).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


def uncertainty_summaries(u: np.ndarray, masks: np.ndarray, kept: np.ndarray):
    band = masks & ~eroded(masks, BOUNDARY_WIDTH)
    kept_masks = masks & kept[:, None, None]
    others = kept_masks.sum(axis=0, dtype=np.int32)[None] - kept_masks
    return masked_means(u, masks), masked_means(u, band), masked_means(u, masks & (others > 0))


def png(u8: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(u8), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok
    return buf.tobytes()


def reference_query_columns(image_id, class_logits, mask_logits, image_hw, *, thresholds, gt=None,
                            supercategory=None, dicc=None, top_k=5) -> dict | None:
    """``rows.query_columns`` computed over whole maps (same arguments, same columns)."""
    class_logits = torch.as_tensor(class_logits).detach().float().cpu()
    mask_logits = torch.as_tensor(mask_logits).detach().float().cpu()
    H, W = int(image_hw[0]), int(image_hw[1])
    Q, N = class_logits.shape[0], class_logits.shape[1] - 1
    if Q == 0:
        return None
    run = Thresholds.of(thresholds)
    c, labels = pl.class_quality(class_logits)
    probs = class_logits.softmax(-1)
    sigma = mask_logits.sigmoid()
    m = pl.mask_quality_from_probs(sigma)
    u = pl.uncertainty_from_probs(sigma).numpy()
    low_res_masks = (sigma > 0.5).numpy()
    masks = upsampled_masks(mask_logits, (H, W))
    rles = encode_masks(masks)
    area, bbox = rle_area_bbox(rles)
    big = torch.from_numpy(area > run.mask_area_threshold)
    keep_ddtf = (ddtf_keep(c, m, run.c_t, run.m_t) & big).numpy()
    keep_coupled = (coupled_keep(c, m, run.s_t) & big).numpy()
    kept = (run.keep(c, m) & big).numpy()
    c, m, labels = c.numpy(), m.numpy(), labels.numpy()
    top_classes, top_probs = rows._top_k(probs[:, :N].numpy(), min(top_k, N))
    unc_inside, unc_boundary, unc_overlap = uncertainty_summaries(u, low_res_masks, kept)
    u8 = np.rint(u * 255).astype(np.uint8)
    return {
        "image_id": np.full(Q, image_id, dtype=np.int64), "query": np.arange(Q, dtype=np.int16),
        "pred_class": labels, "c": c, "m": m, "s": c * m, "top5_classes": top_classes, "top5_probs": top_probs,
        "mask_rle": [r["counts"] for r in rles], "height": np.full(Q, H, dtype=np.int32),
        "width": np.full(Q, W, dtype=np.int32), "area": area, "bbox": bbox,
        "keep_ddtf": keep_ddtf, "keep_coupled": keep_coupled,
        **rows._match_columns(image_id, labels, rles, gt, supercategory, (H, W)),
        **rows._dicc_columns(image_id, dicc, Q, N, top_k),
        "unc_png": [png(x) for x in u8],
        "unc_mean_inside": unc_inside, "unc_mean_boundary": unc_boundary, "unc_mean_overlap": unc_overlap,
    }
