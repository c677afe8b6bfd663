"""The teacher step of Fig. 4 after the teacher's forward pass: filter, DICC, PMUA weights.

Training calls it on the teacher's outputs for the weak views of a batch; ``pldc pseudo-labels``
and the records hook call it on the teacher's outputs for each recorded image. One function, so
the pseudo-labels the records show are the ones training makes.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from pldc_core.method.filters import Thresholds
from pldc_core.method.pseudo_labels import PseudoTargets, dicc_fuse, dicc_weight, make_pseudo_targets


def dicc_w_at(cfg, iteration: int) -> float:
    """Eq. 8's ``w`` at a training ``iteration`` of ``cfg`` (0.5 until burn-in ends, then falling to 0)."""
    t = cfg.train
    return dicc_weight(max(0, iteration - t.burn_in_iters), max(1, t.max_iters - t.burn_in_iters))


def _untimed(_name: str) -> AbstractContextManager:
    return nullcontext()


@dataclass
class PseudoLabels:
    """One image's pseudo-labels: the filter's output, then DICC's classes."""

    kept: PseudoTargets              # the filter's queries: teacher classes, masks, u (Eq. 3-6, 10)
    labels: torch.Tensor             # [K] long, the classes trained on (DICC's where it ran)
    clip_probs: torch.Tensor | None  # [K, N] CLIP's probabilities, None without DICC

    def __len__(self) -> int:
        return len(self.kept)

    @property
    def n_dicc_changed(self) -> int:
        """How many kept queries DICC gave another class."""
        return int((self.labels != self.kept.labels).sum())

    def target(self, pmua: bool) -> dict:
        """The criterion's target: ``labels``, ``masks`` and, with PMUA, ``pixel_weights = 1 - u`` (Eq. 11)."""
        target = {"labels": self.labels.long(), "masks": self.kept.masks}
        if pmua:
            target["pixel_weights"] = 1.0 - self.kept.uncertainty
        return target


@torch.no_grad()
def teacher_step(class_logits: torch.Tensor, mask_logits: torch.Tensor, images: torch.Tensor, *,
                 thresholds: Thresholds, clip=None, w: float | None = None, valid: torch.Tensor | None = None,
                 timed: Callable[[str], AbstractContextManager] = _untimed,
                 min_mask_area: int = 0) -> list[PseudoLabels]:
    """Pseudo-labels of each image from the teacher's outputs.

    ``class_logits [B, Q, N+1]`` and ``mask_logits [B, Q, h, w]`` (float) are the teacher's on
    ``images [B, 3, H, W]`` (the canvas the masks cover); ``valid [B, h, w]`` marks image pixels
    (padding is background, see ``make_pseudo_targets``). ``clip`` (a DICC classifier from
    ``dicc.load_run_clip``, any mode) with Eq. 8's ``w`` turns on DICC: each kept mask, upsampled
    to the image, is classified by CLIP, and the fused distribution (Eq. 9) gives the class.
    ``timed(name)`` is a context manager the trainer uses to time the ``filter`` and ``dicc`` parts.
    ``min_mask_area`` > 0 drops kept pseudo-labels whose mask, at the image's resolution, has at
    most that many pixels (``pldc.mask_area_threshold``), before DICC.
    """
    out = []
    for i in range(class_logits.shape[0]):
        with timed("filter"):
            kept = make_pseudo_targets(class_logits[i], mask_logits[i], filter=thresholds.filter,
                                       c_t=thresholds.c_t, m_t=thresholds.m_t, s_t=thresholds.s_t,
                                       valid=None if valid is None else valid[i])
        full = None
        if min_mask_area > 0 and len(kept):
            with timed("filter"):
                full = F.interpolate(kept.masks[None], size=images.shape[-2:], mode="bilinear")[0] > 0.5
                big = full.flatten(1).sum(1) > min_mask_area
                if not big.all():
                    kept, full = _select(kept, big), full[big]
        labels, clip_probs = kept.labels, None
        if clip is not None and len(kept):
            with timed("dicc"):
                if full is None:
                    full = F.interpolate(kept.masks[None], size=images.shape[-2:], mode="bilinear")[0] > 0.5
                clip_probs = clip.probs(images[i], full).to(kept.probs)
                _, labels = dicc_fuse(kept.probs, clip_probs, w)
        out.append(PseudoLabels(kept, labels, clip_probs))
    return out


def _select(kept: PseudoTargets, which: torch.Tensor) -> PseudoTargets:
    """The pseudo-labels ``which`` (bool [K]) of ``kept``; the filters' counts stay as they were."""
    return replace(kept, keep_idx=kept.keep_idx[which], labels=kept.labels[which], masks=kept.masks[which],
                   uncertainty=kept.uncertainty[which], c=kept.c[which], m=kept.m[which], probs=kept.probs[which])
