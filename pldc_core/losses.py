"""Mask2Former's set criterion, with PL-DC's uncertainty-weighted mask BCE (PMUA, Eq. 11).

The Hungarian matcher and the point sampler are transformers' own
(``Mask2FormerHungarianMatcher``, ``sample_point``); this module adds the per-pixel weights, and
the criterion's mask BCE is ``uncertainty_weighted_bce`` itself (Eq. 11's one definition).
Randomness (the matcher's points, importance sampling) comes from torch's global RNG, which
the trainer seeds and saves with every checkpoint.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerHungarianMatcher,
    dice_loss,
    sample_point,
)


def uncertainty_weighted_bce(logits: torch.Tensor, targets: torch.Tensor,
                             uncertainty: torch.Tensor) -> torch.Tensor:
    """Eq. 11: the mean over all elements of ``(1 - u) * BCE(logits, targets)`` (a scalar).

    The mean is over every element, not over the weights, exactly as the paper's ``1/(QHW)``.
    """
    bce = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    return ((1.0 - uncertainty.float()) * bce).mean()


IGNORE = -100  # the class target of a query matched to an ignore target (F.cross_entropy's ignore_index)


def partial_label_ce(class_logits: torch.Tensor, first: torch.Tensor, second: torch.Tensor,
                     weight: torch.Tensor) -> torch.Tensor:
    """Cross-entropy where a query's target may be either of two classes: ``-log(p_first + p_second)``,
    ``-log p_first`` where they are the same class. ``class_logits [B, Q, C]``, ``first``/``second``
    ``[B, Q]`` (``IGNORE`` entries left out); each term weighted by ``weight[first]`` and averaged as
    ``F.cross_entropy`` averages (the weighted sum over the sum of the weights)."""
    keep = first != IGNORE
    logp = class_logits.float().log_softmax(-1)[keep]
    f, s = first[keep], second[keep]
    log_f = logp.gather(1, f[:, None]).squeeze(1)
    log_s = logp.gather(1, s[:, None]).squeeze(1)
    nll = -torch.where(f == s, log_f, torch.logaddexp(log_f, log_s))
    w = weight[f]
    return (w * nll).sum() / w.sum()


class SetCriterion(nn.Module):
    """Mask2Former's loss: Hungarian matching, class CE, and mask BCE + dice on sampled points.

    Call with ``class_logits [B, Q, N+1]``, ``mask_logits [B, Q, h, w]`` and one target dict per
    image: ``labels [K]`` (long, ``0..N-1``), ``masks [K, H, W]`` (float or bool) and, for
    pseudo-labels, ``pixel_weights [K, H, W]`` (``1 - u``). Each image's masks may have any
    resolution but must cover the same canvas as the mask logits (the padded input): points are
    sampled in normalised coordinates. ``aux_outputs`` are the decoder's intermediate
    ``(class_logits, mask_logits)`` pairs (deep supervision; each is matched on its own).

    Returns ``loss_ce``, ``loss_mask``, ``loss_dice``, the same suffixed ``_0.._L`` for the
    auxiliary layers, and ``loss`` = their sum weighted by ``class_weight`` / ``mask_weight`` /
    ``dice_weight``. Mask losses are normalised by the number of target masks in the batch
    (at least 1), on this process only.

    PMUA: where ``pixel_weights`` are given, a matched pair's mask BCE is
    ``mean_points((1 - u) * BCE)``, the weights read at the same point coordinates as the target
    (Eq. 11 on Mask2Former's sampled points). The dice term stays unweighted: Eq. 11 re-weights
    the BCE only, and dice is a ratio over the whole mask, so per-pixel weights have no single
    meaning in it (the paper leaves this open; this is our choice, docs/METHOD.md).

    Ignore targets (``pldc.ignore_c``, not in the paper): a target dict may also hold
    ``ignore_labels [J]`` and ``ignore_masks [J, H, W]``, objects the teacher was unsure of. They
    take part in the matching like any target, and the query matched to one gets no loss at all
    (no class term, no mask term), where it would otherwise be taught "no object". They do not
    count in the mask normalisation.

    Partial labels (``pldc.dicc_partial``, not in the paper): a target dict may also hold
    ``second_labels [K]``, a second class each target may be. The query matched to target k is
    then taught ``-log(p(labels[k]) + p(second_labels[k]))`` (``partial_label_ce``) instead of
    ``-log p(labels[k])``; matching uses ``labels`` alone.
    """

    def __init__(self, num_classes: int, class_weight: float = 2.0, mask_weight: float = 5.0,
                 dice_weight: float = 5.0, no_object_weight: float = 0.1, num_points: int = 12544,
                 oversample_ratio: float = 3.0, importance_sample_ratio: float = 0.75):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"SetCriterion: num_classes must be at least 1, got {num_classes}")
        if not 0.0 <= importance_sample_ratio <= 1.0 or oversample_ratio < 1.0 or num_points < 1:
            raise ValueError("SetCriterion: need num_points >= 1, oversample_ratio >= 1 and "
                             f"0 <= importance_sample_ratio <= 1 (got {num_points}, {oversample_ratio}, "
                             f"{importance_sample_ratio})")
        self.num_classes = num_classes
        self.loss_weights = {"loss_ce": class_weight, "loss_mask": mask_weight, "loss_dice": dice_weight}
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        class_weights = torch.ones(num_classes + 1)
        class_weights[-1] = no_object_weight
        self.register_buffer("class_weights", class_weights)
        self.matcher = Mask2FormerHungarianMatcher(cost_class=class_weight, cost_mask=mask_weight,
                                                   cost_dice=dice_weight, num_points=num_points)

    def forward(self, class_logits: torch.Tensor, mask_logits: torch.Tensor, targets: Sequence[dict],
                aux_outputs: Sequence[tuple[torch.Tensor, torch.Tensor]] = ()) -> dict[str, torch.Tensor]:
        self._check(class_logits, mask_logits, targets)
        num_masks = max(sum(len(t["labels"]) for t in targets), 1)
        losses = self._layer_losses(class_logits, mask_logits, targets, num_masks)
        total = sum(self.loss_weights[k] * v for k, v in losses.items())
        for i, (aux_class, aux_mask) in enumerate(aux_outputs):
            self._check(aux_class, aux_mask, targets)
            aux = self._layer_losses(aux_class, aux_mask, targets, num_masks)
            total = total + sum(self.loss_weights[k] * v for k, v in aux.items())
            losses.update({f"{k}_{i}": v for k, v in aux.items()})
        losses["loss"] = total
        return losses

    def _check(self, class_logits: torch.Tensor, mask_logits: torch.Tensor, targets: Sequence[dict]) -> None:
        if class_logits.dim() != 3 or class_logits.shape[-1] != self.num_classes + 1:
            raise ValueError(f"class_logits must be [B, Q, {self.num_classes + 1}], got {tuple(class_logits.shape)}")
        if mask_logits.dim() != 4 or mask_logits.shape[:2] != class_logits.shape[:2]:
            raise ValueError(f"mask_logits must be [B, Q, h, w] with B, Q = {tuple(class_logits.shape[:2])}, "
                             f"got {tuple(mask_logits.shape)}")
        if len(targets) != class_logits.shape[0]:
            raise ValueError(f"{len(targets)} target dicts for a batch of {class_logits.shape[0]} images")
        for b, t in enumerate(targets):
            labels, masks = t["labels"], t["masks"]
            if labels.dim() != 1 or masks.dim() != 3 or len(labels) != len(masks):
                raise ValueError(f"target {b}: labels [K] and masks [K, H, W] expected, got "
                                 f"{tuple(labels.shape)} and {tuple(masks.shape)}")
            if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
                raise ValueError(f"target {b}: labels must lie in 0..{self.num_classes - 1}, "
                                 f"got {labels.tolist()}")
            second = t.get("second_labels")
            if second is not None and (second.shape != labels.shape or (len(second) and (
                    int(second.min()) < 0 or int(second.max()) >= self.num_classes))):
                raise ValueError(f"target {b}: second_labels must be [K] in 0..{self.num_classes - 1} like labels, "
                                 f"got {tuple(second.shape)} {second.tolist()}")
            weights = t.get("pixel_weights")
            if weights is not None and weights.shape != masks.shape:
                raise ValueError(f"target {b}: pixel_weights {tuple(weights.shape)} != masks {tuple(masks.shape)}")
            if "ignore_labels" in t:
                ign_labels, ign_masks = t["ignore_labels"], t["ignore_masks"]
                if ign_labels.dim() != 1 or len(ign_labels) != len(ign_masks) or ign_masks.shape[1:] != masks.shape[1:]:
                    raise ValueError(f"target {b}: ignore_labels [J] and ignore_masks [J, H, W] with the masks' "
                                     f"H, W expected, got {tuple(ign_labels.shape)} and {tuple(ign_masks.shape)}")

    def _layer_losses(self, class_logits: torch.Tensor, mask_logits: torch.Tensor, targets: Sequence[dict],
                      num_masks: int) -> dict[str, torch.Tensor]:
        device = class_logits.device
        labels = [t["labels"].long().to(device) for t in targets]
        # ignore targets are matched after the real ones: a match with index >= K is an ignore target
        match_labels = [torch.cat([lab, t["ignore_labels"].long().to(device)]) if "ignore_labels" in t else lab
                        for lab, t in zip(labels, targets)]
        match_masks = [torch.cat([t["masks"].float(), t["ignore_masks"].to(t["masks"].device).float()])
                       if "ignore_labels" in t else t["masks"] for t in targets]
        indices = self.matcher(mask_logits, class_logits, match_masks, match_labels)
        indices = [(src.to(device), tgt.to(device)) for src, tgt in indices]

        target_classes = torch.full(class_logits.shape[:2], self.num_classes, dtype=torch.long, device=device)
        partial = any("second_labels" in t for t in targets)
        second_classes = target_classes.clone() if partial else None
        real_indices = []
        for b, (src, tgt) in enumerate(indices):
            real = tgt < len(labels[b])
            target_classes[b, src[real]] = labels[b][tgt[real]]
            target_classes[b, src[~real]] = IGNORE
            if partial:
                second = targets[b].get("second_labels")
                second = labels[b] if second is None else second.long().to(device)
                second_classes[b, src[real]] = second[tgt[real]]
                second_classes[b, src[~real]] = IGNORE
            real_indices.append((src[real], tgt[real]))
        indices = real_indices
        if bool((target_classes == IGNORE).all()):  # every query ignored: the weighted mean would be 0/0
            loss_ce = class_logits.sum() * 0.0
        elif partial:
            loss_ce = partial_label_ce(class_logits, target_classes, second_classes, self.class_weights)
        else:
            loss_ce = F.cross_entropy(class_logits.float().transpose(1, 2), target_classes,
                                      weight=self.class_weights, ignore_index=IGNORE)
        return {"loss_ce": loss_ce, **self._mask_losses(mask_logits, targets, indices, num_masks)}

    def _mask_losses(self, mask_logits: torch.Tensor, targets: Sequence[dict],
                     indices: list[tuple[torch.Tensor, torch.Tensor]], num_masks: int) -> dict[str, torch.Tensor]:
        batch_idx = torch.cat([torch.full_like(src, b) for b, (src, _) in enumerate(indices)])
        query_idx = torch.cat([src for src, _ in indices])
        if query_idx.numel() == 0:
            # No matched pair: zero, but still attached to the graph (DDP expects every output used).
            zero = mask_logits.sum() * 0.0
            return {"loss_mask": zero, "loss_dice": zero}
        pred = mask_logits[batch_idx, query_idx][:, None].float()  # [M, 1, h, w]

        with torch.no_grad():
            coords = self._sample_points(pred)  # [M, P, 2] in [0, 1]^2
            point_labels, point_uncertainty, start = [], [], 0
            for b, (_, tgt) in enumerate(indices):
                if tgt.numel() == 0:
                    continue
                pts = coords[start:start + tgt.numel()]
                start += tgt.numel()
                masks = targets[b]["masks"][tgt][:, None].to(pred)
                point_labels.append(sample_point(masks, pts, align_corners=False).squeeze(1))
                weights = targets[b].get("pixel_weights")
                if weights is None:
                    point_uncertainty.append(torch.zeros_like(point_labels[-1]))
                else:
                    # The same coordinates as the target mask: weight and label of a point belong
                    # together. "border" padding: zero padding would fade the weights towards the
                    # image edge (within half a pixel of it), i.e. down-weight edge pixels for no reason.
                    sampled = sample_point(weights[tgt][:, None].to(pred), pts, align_corners=False,
                                           padding_mode="border").squeeze(1)
                    point_uncertainty.append(1.0 - sampled)
            point_labels = torch.cat(point_labels)
            point_uncertainty = torch.cat(point_uncertainty)

        point_logits = sample_point(pred, coords, align_corners=False).squeeze(1)  # [M, P]
        # Eq. 11 per matched mask (the mean over its P points), summed over the masks: every mask has
        # P points, so that is M times the mean over all M * P points.
        weighted_bce = uncertainty_weighted_bce(point_logits, point_labels, point_uncertainty)
        return {
            "loss_mask": weighted_bce * point_logits.shape[0] / num_masks,
            "loss_dice": dice_loss(point_logits, point_labels, num_masks),
        }

    def _sample_points(self, pred: torch.Tensor) -> torch.Tensor:
        """Mask2Former's importance sampling: the most uncertain (|logit| smallest) of an
        oversampled random set, plus uniformly random points."""
        num = pred.shape[0]
        candidates = torch.rand(num, int(self.num_points * self.oversample_ratio), 2, device=pred.device)
        candidate_logits = sample_point(pred, candidates, align_corners=False).squeeze(1)
        num_uncertain = int(self.importance_sample_ratio * self.num_points)
        top = (-candidate_logits.abs()).topk(num_uncertain, dim=1).indices
        uncertain = candidates.gather(1, top[..., None].expand(-1, -1, 2))
        random = torch.rand(num, self.num_points - num_uncertain, 2, device=pred.device)
        return torch.cat([uncertain, random], dim=1)
