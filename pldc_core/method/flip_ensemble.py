"""A teacher that also labels the mirrored image (``pldc.teacher_flip``; docs/METHOD.md, "A teacher
that looks twice").

The teacher runs on each image and on its horizontal mirror. The mirror's masks are flipped back,
its queries are paired with the image's by mask IoU (Hungarian, one to one), and each pair's class
probabilities and mask probabilities are averaged. What comes out has the teacher's own shapes
(``[B, Q, N+1]`` class logits, ``[B, Q, h, w]`` mask logits), so the filter, DICC, PMUA and the
records read it unchanged: a pair whose views disagree gets a flat class distribution or a soft
mask, and DDTF's class or mask quality drops it.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from pldc_core.model.inference import covered_hw

_EPS = 1e-6


def mirror_within(images: torch.Tensor, widths: list[int]) -> torch.Tensor:
    """``images [B, C, H, W]`` with the first ``widths[i]`` columns of image ``i`` mirrored; the
    columns past them (padding) stay where they are."""
    out = images.clone()
    for i, w in enumerate(widths):
        out[i, ..., :w] = images[i, ..., :w].flip(-1)
    return out


def pair_queries(probs_a: torch.Tensor, probs_b: torch.Tensor) -> torch.Tensor:
    """For each query of view A (``probs_a [Q, h, w]``, mask probabilities), the index of the
    query of view B paired with it: the one-to-one assignment of largest total soft IoU."""
    a, b = probs_a.flatten(1).double(), probs_b.flatten(1).double()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    iou = inter / union.clamp(min=_EPS)
    rows, cols = linear_sum_assignment(-iou.cpu().numpy())
    pairing = np.empty(len(rows), dtype=np.int64)
    pairing[rows] = cols
    return torch.from_numpy(pairing).to(probs_a.device)


def fuse_views(class_logits: torch.Tensor, mask_logits: torch.Tensor, flip_class_logits: torch.Tensor,
               flip_mask_logits: torch.Tensor, mask_widths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Average the teacher's outputs on the images and on their mirrors.

    ``flip_*`` are the outputs on ``mirror_within(images, ...)``; ``mask_widths[i]`` is how many
    mask columns the mirrored part of image ``i`` spans (the mirror's masks are flipped back
    within them; past them, the image's own masks are kept). Returns ``(class_logits,
    mask_logits)`` whose softmax / sigmoid are the pairs' mean probabilities.
    """
    mask_p = mask_logits.float().sigmoid()
    flip_p = flip_mask_logits.float().sigmoid()
    back = mask_p.clone()
    for i, w in enumerate(mask_widths):
        back[i, ..., :w] = flip_p[i, ..., :w].flip(-1)
    cls_p = class_logits.float().softmax(-1)
    flip_cls_p = flip_class_logits.float().softmax(-1)
    fused_cls, fused_mask = torch.empty_like(cls_p), torch.empty_like(mask_p)
    for i in range(cls_p.shape[0]):
        j = pair_queries(mask_p[i], back[i])
        fused_cls[i] = (cls_p[i] + flip_cls_p[i, j]) / 2
        fused_mask[i] = (mask_p[i] + back[i, j]) / 2
    fused_mask = fused_mask.clamp(_EPS, 1 - _EPS)
    return fused_cls.clamp(min=1e-12).log(), torch.log(fused_mask) - torch.log1p(-fused_mask)


def flip_widths(image_widths: list[int], canvas_width: int, stride: int) -> tuple[list[int], list[int]]:
    """The columns to mirror, in pixels and in mask cells of ``stride`` pixels: the mask cells that
    cover any of each image (``covered_hw``, as inference keeps them), so the flipped-back masks
    line up cell for cell; none for an image of width 0, at most the canvas. The canvas's width
    is a multiple of ``stride``."""
    grid = (1, canvas_width // stride)
    cells = [min(grid[1], covered_hw((1, int(w)), (1, canvas_width), grid)[1]) if w else 0 for w in image_widths]
    return [c * stride for c in cells], cells
