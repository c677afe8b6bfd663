"""The teacher step of Fig. 4: the teacher's forward pass, then filter, DICC and PMUA weights.

Training calls ``teacher_step`` on the weak views of a batch; ``pldc pseudo-labels`` and the
records hook call it on the recorded images (resized as for evaluation). One function, so the
pseudo-labels the records show are the ones training makes. ``label_outputs`` is its second half
(from the teacher's outputs on), for callers that already hold the outputs.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from pldc_core.method.filters import Thresholds
from pldc_core.method.flip_ensemble import flip_widths, fuse_views, mirror_within
from pldc_core.method.pseudo_labels import (PseudoTargets, dicc_fuse, dicc_weight, make_pseudo_targets,
                                            masks_at_size)
from pldc_core.model.inference import covered_hw


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

    @property
    def clip_labels(self) -> torch.Tensor | None:
        """[K] CLIP's most likely class of each pseudo-label (DICC's class where CLIP did not run on it);
        None without DICC."""
        if self.clip_probs is None:
            return None
        ran = torch.isfinite(self.clip_probs).all(dim=1)
        return torch.where(ran, self.clip_probs.nan_to_num(-1.0).argmax(dim=1), self.labels).long()

    def target(self, pmua: bool, partial: bool = False) -> dict:
        """The criterion's target: ``labels``, ``masks`` and, with PMUA, ``pixel_weights = 1 - u`` (Eq. 11).
        ``partial`` (``pldc.dicc_partial``): also ``second_labels``, CLIP's class where it differs from
        the label (the class term then accepts either), the label itself elsewhere."""
        target = {"labels": self.labels.long(), "masks": self.kept.masks}
        if pmua:
            target["pixel_weights"] = 1.0 - self.kept.uncertainty
        second = self.clip_labels if partial else None
        if second is not None:
            target["second_labels"] = second
        return target


@dataclass
class TeacherOutput:
    """What the teacher step made of a batch: the teacher's raw outputs and each image's pseudo-labels."""

    class_logits: torch.Tensor         # [B, Q, N+1] float
    mask_logits: torch.Tensor          # [B, Q, h, w] float, over the padded input
    pseudo_labels: list[PseudoLabels]  # one per image
    valid: torch.Tensor | None = None  # [B, h, w] bool, the image pixels at mask-logit resolution


@torch.no_grad()
def teacher_step(teacher: torch.nn.Module, images: torch.Tensor, *, thresholds: Thresholds, clip=None,
                 w: float | None = None, valid: torch.Tensor | None = None,
                 image_hw: list[tuple[int, int]] | None = None,
                 timed: Callable[[str], AbstractContextManager] = _untimed,
                 autocast: Callable[[], AbstractContextManager] = nullcontext, min_mask_area: int = 0,
                 skip_settled: bool = False, flip: bool = False) -> TeacherOutput:
    """Fig. 4's teacher step on ``images [B, 3, H, W]``: the teacher's forward pass (timed as
    ``teacher``, under ``autocast()``), then ``label_outputs`` on its outputs.

    ``valid [B, H, W]`` (bool) marks the real image pixels of a padded batch (training's weak
    views); or ``image_hw``, each image's real size at the top left of the padded input (images
    resized as for evaluation, which keeps the mask pixels that cover any of it). The rest is
    background for the pseudo-labels. ``flip``: the teacher also labels each image's mirror and
    the two views are averaged (``flip_ensemble``, ``pldc.teacher_flip``). The other arguments are
    ``label_outputs``'s.
    """
    if flip:
        if valid is not None:
            widths = [int(v.any(0).nonzero().max()) + 1 if v.any() else 0 for v in valid]
        elif image_hw is not None:
            widths = [int(w) for _, w in image_hw]
        else:
            widths = [images.shape[-1]] * images.shape[0]
        pixels, cells = flip_widths(widths, images.shape[-1], teacher.mask_stride)
        images_in = torch.cat([images, mirror_within(images, pixels)])
    else:
        images_in = images
    with timed("teacher"), autocast():
        out = teacher(images_in)  # the mirrors in the same batch: the teacher is in eval mode
    class_logits, mask_logits = out.class_logits.float(), out.mask_logits.float()
    if flip:
        b = images.shape[0]
        class_logits, mask_logits = fuse_views(class_logits[:b], mask_logits[:b], class_logits[b:],
                                               mask_logits[b:], cells)
    small_valid = None
    if valid is not None:
        small_valid = F.interpolate(valid[:, None].float(), size=mask_logits.shape[-2:], mode="nearest")[:, 0] > 0.5
    elif image_hw is not None:
        # as inference crops them: a mask pixel is image when it covers any of the real image
        small_valid = torch.zeros(len(image_hw), *mask_logits.shape[-2:], dtype=torch.bool, device=mask_logits.device)
        for i, hw in enumerate(image_hw):
            rows, cols = covered_hw(hw, tuple(images.shape[-2:]), tuple(mask_logits.shape[-2:]))
            small_valid[i, :rows, :cols] = True
    labels = label_outputs(class_logits, mask_logits, images, thresholds=thresholds, clip=clip, w=w,
                           valid=small_valid, timed=timed, min_mask_area=min_mask_area, skip_settled=skip_settled)
    return TeacherOutput(class_logits, mask_logits, labels, small_valid)


@torch.no_grad()
def label_outputs(class_logits: torch.Tensor, mask_logits: torch.Tensor, images: torch.Tensor, *,
                  thresholds: Thresholds, clip=None, w: float | None = None, valid: torch.Tensor | None = None,
                  timed: Callable[[str], AbstractContextManager] = _untimed,
                  min_mask_area: int = 0, skip_settled: bool = False) -> list[PseudoLabels]:
    """Pseudo-labels of each image from the teacher's outputs.

    ``class_logits [B, Q, N+1]`` and ``mask_logits [B, Q, h, w]`` (float) are the teacher's on
    ``images [B, 3, H, W]`` (the canvas the masks cover); ``valid [B, h, w]`` marks image pixels
    (padding is background, see ``make_pseudo_targets``). ``clip`` (a DICC classifier from
    ``dicc.load_run_clip``, any mode) with Eq. 8's ``w`` turns on DICC: each kept mask, upsampled
    to the image as inference draws it (``masks_at_size``), is classified by CLIP, and the fused
    distribution (Eq. 9) gives the class.
    ``timed(name)`` is a context manager the trainer uses to time the ``filter`` and ``dicc`` parts.
    ``min_mask_area`` > 0 drops kept pseudo-labels whose mask, at the image's resolution, has at
    most that many pixels (``pldc.mask_area_threshold``), before DICC.
    ``skip_settled``: run CLIP only on the pseudo-labels whose class Eq. 9 could still change at
    this ``w`` (``dicc_can_change``); the others keep the teacher's class, exactly as DICC would
    give them, and NaN rows in ``clip_probs``. Training sets it (after the first ~28% of the
    semi-supervised steps at ``c_t`` 0.85 no class can change, so CLIP's forward passes are saved);
    the records keep CLIP's probabilities of every kept query.
    """
    out = []
    for i in range(class_logits.shape[0]):
        with timed("filter"):
            kept = make_pseudo_targets(class_logits[i], mask_logits[i], filter=thresholds.filter,
                                       c_t=thresholds.c_t, m_t=thresholds.m_t, s_t=thresholds.s_t,
                                       valid=None if valid is None else valid[i])
        full = None  # the kept masks at the image's resolution, made when needed
        image_valid = None if valid is None else valid[i]
        if min_mask_area > 0 and len(kept):
            with timed("filter"):
                full = masks_at_size(mask_logits[i][kept.keep_idx], images.shape[-2:], image_valid)
                big = full.flatten(1).sum(1) > min_mask_area
                if not big.all():
                    kept, full = _select(kept, big), full[big]
        labels, clip_probs = kept.labels, None
        if clip is not None and len(kept):
            with timed("dicc"):
                if full is None:
                    full = masks_at_size(mask_logits[i][kept.keep_idx], images.shape[-2:], image_valid)
                if skip_settled:
                    labels, clip_probs = _dicc_where_open(clip, images[i], full, kept, w)
                else:
                    clip_probs = clip.probs(images[i], full).to(kept.probs)
                    _, labels = dicc_fuse(kept.probs, clip_probs, w)
        out.append(PseudoLabels(kept, labels, clip_probs))
    return out


def dicc_can_change(teacher_probs: torch.Tensor, w: float) -> torch.Tensor:
    """Which pseudo-labels Eq. 9 could move to another class at weight ``w``, whatever CLIP says
    (bool ``[K]``, docs/METHOD.md "When DICC can act at all").

    ``w * (p_clip(k) - p_clip(t))`` is at most ``w``, so the teacher's class ``t`` stays when its
    margin over every other class, ``p_hat(t) - max_k p_hat(k)``, has ``(1 - w) * margin > w``.
    """
    if teacher_probs.shape[-1] < 2:
        return torch.zeros(teacher_probs.shape[:-1], dtype=torch.bool, device=teacher_probs.device)
    top2 = teacher_probs.topk(2, dim=-1).values
    return (1.0 - w) * (top2[..., 0] - top2[..., 1]) <= w


def _dicc_where_open(clip, image: torch.Tensor, full: torch.Tensor, kept: PseudoTargets,
                     w: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DICC on the pseudo-labels whose class can still change; the others keep the teacher's class
    and get NaN rows of CLIP probabilities."""
    open_ = dicc_can_change(kept.probs, w)
    labels = kept.labels.clone()
    clip_probs = torch.full_like(kept.probs, float("nan"))
    if open_.any():
        clip_probs[open_] = clip.probs(image, full[open_]).to(kept.probs)
        labels[open_] = dicc_fuse(kept.probs[open_], clip_probs[open_], w)[1]
    return labels, clip_probs


def _select(kept: PseudoTargets, which: torch.Tensor) -> PseudoTargets:
    """The pseudo-labels ``which`` (bool [K]) of ``kept``; the filters' counts stay as they were."""
    return replace(kept, keep_idx=kept.keep_idx[which], labels=kept.labels[which], masks=kept.masks[which],
                   uncertainty=kept.uncertainty[which], c=kept.c[which], m=kept.m[which], probs=kept.probs[which])
