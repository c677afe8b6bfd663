"""PL-DC's pseudo-label equations (docs/METHOD.md, Eq. 3-10) as pure tensor functions (Eq. 5: ``filters``).

Every function takes tensors and returns tensors (or plain numbers), works on any device,
and is batched over leading dimensions: ``class_logits [..., Q, N+1]`` (last = no-object),
``mask_logits [..., Q, H, W]``. Nothing here keeps state or reads a config.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pldc_core.method.filters import FILTERS, Thresholds, coupled_keep, ddtf_keep


def class_quality(class_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3: ``c`` = the largest real-class probability of a softmax over all N+1 logits.

    Returns ``(c [..., Q], labels [..., Q])``; ``labels`` are indices into the N real classes.
    """
    probs = class_logits.float().softmax(dim=-1)
    c, labels = probs[..., :-1].max(dim=-1)
    return c, labels


def binary_mask(mask_logits: torch.Tensor) -> torch.Tensor:
    """The pseudo / predicted mask: ``sigma(q) > 0.5`` (bool, same shape)."""
    return mask_logits.float().sigmoid() > 0.5


def mask_quality_from_probs(probs: torch.Tensor) -> torch.Tensor:
    """``mask_quality`` given ``sigma(q)`` already computed (callers that also need ``u`` share it)."""
    foreground = (probs > 0.5).to(probs.dtype)
    area = foreground.sum(dim=(-2, -1))
    # clamp: a mask with no pixel above 0.5 has a zero numerator, so m = 0 as the spec says.
    return (probs * foreground).sum(dim=(-2, -1)) / area.clamp(min=1)


def mask_quality(mask_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 4: mean of ``sigma(q)`` over the pixels where ``sigma(q) > 0.5``; 0 when there are none.

    ``mask_logits [..., Q, H, W]`` -> ``m [..., Q]``.
    """
    return mask_quality_from_probs(mask_logits.float().sigmoid())


def uncertainty_from_probs(probs: torch.Tensor) -> torch.Tensor:
    """``pixel_uncertainty`` given ``sigma(q)`` already computed."""
    return 1.0 - 2.0 * (probs - 0.5).abs()


def pixel_uncertainty(mask_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 10: ``u = 1 - 2 |sigma(q) - 0.5|`` per pixel (1 at sigma = 0.5, 0 at sigma = 0 or 1)."""
    return uncertainty_from_probs(mask_logits.float().sigmoid())


def dicc_weight(it_cur: int, it_max: int) -> float:
    """Eq. 8: ``w = 0.25 * (cos(pi * it_cur / it_max) + 1)``, 0.5 at the start and 0 at the end.

    ``it_cur`` is clamped to ``[0, it_max]`` so that ``w`` never rises again after the schedule ends.
    """
    if it_max <= 0:
        raise ValueError(f"dicc_weight: it_max must be positive, got {it_max}")
    t = min(max(it_cur, 0), it_max) / it_max
    return 0.25 * (math.cos(math.pi * t) + 1.0)


def teacher_class_probs(class_logits: torch.Tensor) -> torch.Tensor:
    """``p_hat``: the teacher's distribution over the N real classes, renormalised to sum to 1.

    Renormalising the real-class part of the N+1 softmax equals a softmax over the N real
    logits alone (the no-object term cancels), which is what is computed here.
    ``[..., Q, N+1]`` -> ``[..., Q, N]``.
    """
    return class_logits[..., :-1].float().softmax(dim=-1)


def dicc_fuse(teacher_probs: torch.Tensor, clip_probs: torch.Tensor,
              w: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 9: ``p_f = w * p_clip + (1 - w) * p_hat`` over the N real classes; labels = argmax.

    Returns ``(fused [..., N], labels [...])``.
    """
    if teacher_probs.shape != clip_probs.shape:
        raise ValueError(f"dicc_fuse: teacher probabilities {tuple(teacher_probs.shape)} and CLIP "
                         f"probabilities {tuple(clip_probs.shape)} differ in shape")
    fused = w * clip_probs + (1.0 - w) * teacher_probs
    return fused, fused.argmax(dim=-1)


@dataclass
class PseudoTargets:
    """The pseudo-labels of one image, K of them, at mask-logit resolution ``[h, w]``."""

    keep_idx: torch.Tensor     # [K] long, teacher query indices
    labels: torch.Tensor       # [K] long, teacher's class (before DICC)
    masks: torch.Tensor        # [K, h, w] float 0/1, sigma > 0.5
    uncertainty: torch.Tensor  # [K, h, w] float, u of Eq. 10
    c: torch.Tensor            # [K] class quality
    m: torch.Tensor            # [K] mask quality
    probs: torch.Tensor        # [K, N] teacher distribution over the real classes (p_hat)
    num_queries: int           # Q, every teacher query of the image
    n_ddtf: int                # queries DDTF would keep (logged whichever filter is active)
    n_coupled: int             # queries the coupled filter would keep

    def __len__(self) -> int:
        return int(self.keep_idx.numel())


def _resize_valid(valid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    valid = valid.bool()
    if tuple(valid.shape) == tuple(size):
        return valid
    if valid.dim() != 2:
        raise ValueError(f"valid must be [H, W], got shape {tuple(valid.shape)}")
    # A low-resolution pixel is valid when at least half of the area it covers is image.
    return F.interpolate(valid[None, None].float(), size=size, mode="area")[0, 0] >= 0.5


def _image_probs(mask_logits: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mask probabilities with padding (outside ``valid``) set to certain background."""
    probs = mask_logits.float().sigmoid()
    if valid is not None:
        probs = probs * _resize_valid(valid.to(probs.device), probs.shape[-2:])
    return probs


@torch.no_grad()
def masks_at_size(mask_logits: torch.Tensor, size: tuple[int, int], valid: torch.Tensor | None = None) -> torch.Tensor:
    """Masks ``[K, h, w]`` (logits) drawn at ``size`` as inference draws them: the logits resized
    bilinearly, then sigma > 0.5. Outside ``valid`` (bool, any size covering the same canvas;
    the padding of a batch) every pixel is background. Returns bool ``[K, *size]``.

    Not the binarised cells resized: at a stride of 4 that turns a 10 px object's outline into
    4-px steps, and DICC's crops, blank outside the mask, show CLIP that outline
    (docs/METHOD.md, "DICC crops").
    """
    size = (int(size[0]), int(size[1]))
    if mask_logits.shape[0] == 0:
        return torch.zeros(0, *size, dtype=torch.bool, device=mask_logits.device)
    masks = F.interpolate(mask_logits[None].float(), size=size, mode="bilinear", align_corners=False)[0] > 0
    if valid is not None:
        masks &= F.interpolate(valid[None, None].float().to(masks.device), size=size, mode="nearest")[0, 0] > 0.5
    return masks


@torch.no_grad()
def make_pseudo_targets(class_logits: torch.Tensor, mask_logits: torch.Tensor, *, filter: str,
                        c_t: float, m_t: float, s_t: float,
                        valid: torch.Tensor | None = None) -> PseudoTargets:
    """Pseudo-labels of ONE image from the teacher's outputs (DDTF or the coupled filter, PMUA's u).

    ``class_logits [Q, N+1]``, ``mask_logits [Q, h, w]``. ``filter``: ``"ddtf"`` (Eq. 5),
    ``"coupled"`` (``c * m >= s_t``) or ``"none"`` (every query is kept). Both filters' counts
    are returned whichever is active. Outputs are detached (no gradient reaches the teacher).

    ``valid`` (bool ``[h, w]``, or any size covering the same canvas; it is then resized) marks
    image pixels; padding pixels are treated as if the teacher were certain they are
    background: sigma = 0 there, so they are background in the pseudo-mask, carry zero
    uncertainty (full weight 1 - u = 1) and do not count in ``m``. Why: (1) Mask2Former's
    supervised targets are zero-padded and its loss covers padding with full weight, so
    labeled and unlabeled images then teach the student the same thing there; (2)
    Mask2Former's inference crops the padding away before scoring a mask, so ``m`` then
    matches how the model is evaluated; (3) the student sees the same padding in the strong
    view, so "nothing here" is the correct label, and whatever the teacher predicts on padding
    is not evidence about the image.
    """
    if filter not in FILTERS:
        raise ValueError(f"unknown pseudo-label filter {filter!r}; expected one of {FILTERS}")
    if class_logits.dim() != 2 or mask_logits.dim() != 3 or class_logits.shape[0] != mask_logits.shape[0]:
        raise ValueError(f"make_pseudo_targets takes one image: class_logits [Q, N+1] and mask_logits "
                         f"[Q, h, w], got {tuple(class_logits.shape)} and {tuple(mask_logits.shape)}")
    probs = _image_probs(mask_logits, valid)
    c, labels = class_quality(class_logits)
    m = mask_quality_from_probs(probs)
    keep_d = ddtf_keep(c, m, c_t, m_t)
    keep_c = coupled_keep(c, m, s_t)
    keep = Thresholds(filter, c_t, m_t, s_t).keep(c, m)
    idx = keep.nonzero().squeeze(1)
    kept = probs[idx]
    return PseudoTargets(
        keep_idx=idx,
        labels=labels[idx],
        masks=(kept > 0.5).float(),
        uncertainty=uncertainty_from_probs(kept),
        c=c[idx],
        m=m[idx],
        probs=teacher_class_probs(class_logits)[idx],
        num_queries=int(class_logits.shape[0]),
        n_ddtf=int(keep_d.sum()),
        n_coupled=int(keep_c.sum()),
    )


@torch.no_grad()
def uncertain_queries(class_logits: torch.Tensor, mask_logits: torch.Tensor, keep_idx: torch.Tensor,
                      c_min: float, valid: torch.Tensor | None = None,
                      max_iou: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's likely objects that the filter dropped, in ONE image, one per object.

    Candidates are the queries not in ``keep_idx`` whose class quality is at least ``c_min`` and
    whose mask (sigma > 0.5, on ``valid`` pixels as in ``make_pseudo_targets``) is not empty.
    Taken by decreasing class quality, a candidate is skipped when its mask overlaps a kept
    pseudo-label or an already taken candidate at mask IoU > ``max_iou``: a duplicate of an
    object should still be taught "no object", as Mask2Former's one-to-one matching intends.

    Returns their ``labels [J]`` (long) and ``masks [J, h, w]`` (float 0/1): the "ignore" targets
    of ``pldc.ignore_c`` (docs/METHOD.md, "Ignoring what the teacher is unsure of"; not in the paper).
    """
    probs = _image_probs(mask_logits, valid)
    c, labels = class_quality(class_logits)
    masks = (probs > 0.5).flatten(1).float()  # [Q, hw]
    keep_idx = keep_idx.to(c.device)
    candidate = (c >= c_min) & (masks.sum(1) > 0)
    candidate[keep_idx] = False
    taken = [int(i) for i in keep_idx]
    chosen = []
    for i in sorted(candidate.nonzero().squeeze(1).tolist(), key=lambda k: -float(c[k])):
        if taken:
            inter = masks[taken] @ masks[i]
            union = masks[taken].sum(1) + masks[i].sum() - inter
            if bool((inter / union > max_iou).any()):
                continue
        taken.append(i)
        chosen.append(i)
    idx = torch.tensor(chosen, dtype=torch.long, device=c.device)
    return labels[idx], masks[idx].view(-1, *probs.shape[-2:])
