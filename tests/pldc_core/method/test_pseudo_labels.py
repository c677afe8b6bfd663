"""Eq. 3-10 against values worked out by hand (docs/METHOD.md)."""
import math

import pytest
import torch

from pldc_core.method.filters import Thresholds, coupled_keep, ddtf_keep
from pldc_core.method.pseudo_labels import (PseudoTargets, binary_mask, class_quality, dicc_fuse, dicc_weight,
                                            make_pseudo_targets, mask_quality, pixel_uncertainty, teacher_class_probs,
                                            uncertain_queries)
from pldc_core.method.teacher_step import PseudoLabels, label_outputs

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def logit(p):
    """Inverse sigmoid, so that tests can be written in probabilities."""
    p = torch.as_tensor(p, dtype=torch.float64)
    return torch.log(p / (1 - p)).float()


def close(a, b, tol=1e-5):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float32).cpu(),
                          torch.as_tensor(b, dtype=torch.float32).cpu(), atol=tol, rtol=0)


# --------------------------------------------------------------------------- class quality
@pytest.mark.parametrize("device", DEVICES)
def test_class_quality_includes_no_object_in_softmax_but_not_in_max(device):
    # softmax(log([1, 2, 1])) = [0.25, 0.5, 0.25]; softmax(log([3, 1, 4])) = [3/8, 1/8, 4/8]
    logits = torch.log(torch.tensor([[1.0, 2.0, 1.0], [3.0, 1.0, 4.0]], device=device))
    c, labels = class_quality(logits)
    assert close(c, [0.5, 0.375])
    assert labels.tolist() == [1, 0]  # query 1: no-object is largest, but only real classes compete
    assert c.device.type == device


def test_class_quality_batched_over_leading_dims():
    logits = torch.randn(2, 3, 5, 4)
    c, labels = class_quality(logits)
    assert c.shape == labels.shape == (2, 3, 5)
    c01, labels01 = class_quality(logits[0, 1])
    assert torch.equal(labels[0, 1], labels01) and close(c[0, 1], c01)


def test_teacher_class_probs_renormalises_real_classes():
    logits = torch.log(torch.tensor([[1.0, 2.0, 1.0], [3.0, 1.0, 4.0]]))
    # [0.25, 0.5] / 0.75 and [3/8, 1/8] / (4/8)
    assert close(teacher_class_probs(logits), [[1 / 3, 2 / 3], [0.75, 0.25]])
    batched = teacher_class_probs(torch.randn(2, 4, 6, 8))
    assert batched.shape == (2, 4, 6, 7) and close(batched.sum(-1), torch.ones(2, 4, 6))


# --------------------------------------------------------------------------- mask quality
def test_mask_quality_mean_over_confident_pixels():
    q = torch.stack([
        logit([[0.9, 0.7], [0.2, 0.4]]),   # foreground {0.9, 0.7} -> 0.8
        logit([[0.6, 0.6], [0.6, 0.99]]),  # all foreground -> (0.6*3 + 0.99)/4 = 0.6975
    ])
    assert close(mask_quality(q), [0.8, 0.6975])


def test_mask_quality_zero_when_no_pixel_above_half():
    q = torch.stack([logit([[0.2, 0.4], [0.1, 0.3]]), torch.zeros(2, 2)])  # logit 0 -> sigma exactly 0.5
    assert mask_quality(q).tolist() == [0.0, 0.0]
    assert not binary_mask(torch.zeros(2, 2)).any()


def test_mask_quality_batched_over_leading_dims():
    q = torch.randn(2, 3, 4, 5, 6)
    m = mask_quality(q)
    assert m.shape == (2, 3, 4)
    assert close(m[1, 2], mask_quality(q[1, 2]))


# --------------------------------------------------------------------------- uncertainty
def test_pixel_uncertainty_hand_values():
    q = logit([[0.5, 0.9], [0.1, 0.75]])
    assert close(pixel_uncertainty(q), [[1.0, 0.2], [0.2, 0.5]])
    assert close(pixel_uncertainty(torch.tensor([-100.0, 100.0])), [0.0, 0.0])
    assert pixel_uncertainty(torch.randn(2, 3, 4, 5)).shape == (2, 3, 4, 5)


# --------------------------------------------------------------------------- filters
def test_ddtf_and_coupled_filters():
    c = torch.tensor([0.9, 0.9, 0.8, 0.5])
    m = torch.tensor([0.95, 0.8, 0.99, 1.0])  # s = [0.855, 0.72, 0.792, 0.5]
    assert ddtf_keep(c, m, 0.85, 0.9).tolist() == [True, False, False, False]
    # the coupled score keeps query 2 (good mask, weak class) which DDTF rejects
    assert coupled_keep(c, m, 0.765).tolist() == [True, False, True, False]


def test_ddtf_thresholds_are_inclusive_and_batched():
    c = torch.tensor([[0.85, 0.84], [0.85, 1.0]])
    m = torch.tensor([[0.9, 0.9], [0.89, 0.9]])
    assert ddtf_keep(c, m, 0.85, 0.9).tolist() == [[True, False], [False, True]]


# --------------------------------------------------------------------------- DICC
def test_dicc_weight_schedule():
    assert dicc_weight(0, 100) == pytest.approx(0.5)
    assert dicc_weight(50, 100) == pytest.approx(0.25)
    assert dicc_weight(25, 100) == pytest.approx(0.25 * (math.cos(math.pi / 4) + 1))  # 0.42678
    assert dicc_weight(100, 100) == pytest.approx(0.0)
    assert dicc_weight(150, 100) == pytest.approx(0.0)  # clamped: w does not rise again
    assert dicc_weight(-5, 100) == pytest.approx(0.5)
    assert isinstance(dicc_weight(3, 10), float)
    with pytest.raises(ValueError):
        dicc_weight(0, 0)


def test_dicc_fuse_hand_values():
    teacher = torch.tensor([[0.7, 0.2, 0.1]])
    clip = torch.tensor([[0.1, 0.8, 0.1]])
    fused, labels = dicc_fuse(teacher, clip, 0.5)
    assert close(fused, [[0.4, 0.5, 0.1]]) and labels.tolist() == [1]
    fused, labels = dicc_fuse(teacher, clip, 0.25)
    assert close(fused, [[0.55, 0.35, 0.1]]) and labels.tolist() == [0]
    fused, labels = dicc_fuse(teacher, clip, 0.0)
    assert close(fused, teacher) and labels.tolist() == [0]
    fused, labels = dicc_fuse(torch.rand(2, 3, 5).softmax(-1), torch.rand(2, 3, 5).softmax(-1), 0.3)
    assert fused.shape == (2, 3, 5) and labels.shape == (2, 3) and close(fused.sum(-1), torch.ones(2, 3))
    with pytest.raises(ValueError, match="differ in shape"):
        dicc_fuse(torch.zeros(2, 3), torch.zeros(2, 4), 0.5)


# --------------------------------------------------------------------------- one image
def _teacher_outputs():
    """Q=3 queries, N=2 classes, 2x2 masks.

    q0: class probs [0.05, 0.9 | 0.05] -> c=0.9, label 1; mask [[.95,.95],[.1,.1]] -> m=0.95
    q1: class probs [0.9, 0.05 | 0.05] -> c=0.9, label 0; mask [[.8,.1],[.1,.1]]   -> m=0.8
    q2: class probs [0.05, 0.05 | 0.9] -> c=0.05;         mask all .99            -> m=0.99
    """
    class_logits = torch.log(torch.tensor([[0.05, 0.9, 0.05], [0.9, 0.05, 0.05], [0.05, 0.05, 0.9]]))
    mask_logits = torch.stack([
        logit([[0.95, 0.95], [0.1, 0.1]]),
        logit([[0.8, 0.1], [0.1, 0.1]]),
        logit([[0.99, 0.99], [0.99, 0.99]]),
    ])
    return class_logits, mask_logits


THRESH = dict(c_t=0.85, m_t=0.9, s_t=0.7)  # s = [0.855, 0.72, 0.0495]


def test_make_pseudo_targets_ddtf():
    pt = make_pseudo_targets(*_teacher_outputs(), filter="ddtf", **THRESH)
    assert isinstance(pt, PseudoTargets) and len(pt) == 1
    assert pt.keep_idx.tolist() == [0] and pt.labels.tolist() == [1]
    assert pt.masks.dtype == torch.float32 and pt.masks.tolist() == [[[1.0, 1.0], [0.0, 0.0]]]
    assert close(pt.uncertainty, [[[0.1, 0.1], [0.2, 0.2]]])
    assert close(pt.c, [0.9]) and close(pt.m, [0.95])
    assert close(pt.probs, [[0.05 / 0.95, 0.9 / 0.95]])
    assert (pt.num_queries, pt.n_ddtf, pt.n_coupled) == (3, 1, 2)


def test_make_pseudo_targets_coupled_and_none():
    pt = make_pseudo_targets(*_teacher_outputs(), filter="coupled", **THRESH)
    assert pt.keep_idx.tolist() == [0, 1] and pt.labels.tolist() == [1, 0]
    assert close(pt.m, [0.95, 0.8])
    assert (pt.n_ddtf, pt.n_coupled) == (1, 2)  # both counts, whichever filter is active
    pt = make_pseudo_targets(*_teacher_outputs(), filter="none", **THRESH)
    assert pt.keep_idx.tolist() == [0, 1, 2]


def test_make_pseudo_targets_all_filtered():
    class_logits, mask_logits = _teacher_outputs()
    pt = make_pseudo_targets(class_logits, mask_logits, filter="ddtf", c_t=0.99, m_t=0.9, s_t=0.99)
    assert len(pt) == 0 and (pt.n_ddtf, pt.n_coupled) == (0, 0)
    assert pt.labels.shape == (0,) and pt.masks.shape == (0, 2, 2)
    assert pt.uncertainty.shape == (0, 2, 2) and pt.probs.shape == (0, 2)
    target = PseudoLabels(pt, pt.labels, None).target(pmua=True)
    assert target["labels"].dtype == torch.long and target["pixel_weights"].shape == (0, 2, 2)


def test_make_pseudo_targets_padding_is_certain_background():
    class_logits, mask_logits = _teacher_outputs()
    valid = torch.tensor([[True, False], [True, False]])  # right column is padding
    pt = make_pseudo_targets(class_logits, mask_logits, filter="none", valid=valid, **THRESH)
    assert pt.masks[0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert close(pt.uncertainty[0], [[0.1, 0.0], [0.2, 0.0]])
    assert close(pt.m, [0.95, 0.8, 0.99])  # padding pixels do not count in m
    # a validity mask at the input resolution (4x) is reduced to the mask resolution
    big = valid.repeat_interleave(4, 0).repeat_interleave(4, 1)
    pt_big = make_pseudo_targets(class_logits, mask_logits, filter="none", valid=big, **THRESH)
    assert torch.equal(pt_big.masks, pt.masks) and torch.equal(pt_big.uncertainty, pt.uncertainty)


def test_make_pseudo_targets_drops_a_mask_that_lies_in_padding_only():
    class_logits, mask_logits = _teacher_outputs()
    valid = torch.tensor([[False, False], [True, True]])  # q0's foreground is all padding
    pt = make_pseudo_targets(class_logits, mask_logits, filter="ddtf", valid=valid, **THRESH)
    assert len(pt) == 0 and pt.n_ddtf == 0


def test_make_pseudo_targets_is_detached_and_checks_input():
    class_logits, mask_logits = _teacher_outputs()
    class_logits.requires_grad_(True)
    mask_logits.requires_grad_(True)
    pt = make_pseudo_targets(class_logits, mask_logits, filter="ddtf", **THRESH)
    assert not any(t.requires_grad for t in (pt.masks, pt.uncertainty, pt.probs, pt.c, pt.m))
    with pytest.raises(ValueError, match="unknown pseudo-label filter 'dtf'"):
        make_pseudo_targets(class_logits, mask_logits, filter="dtf", **THRESH)
    with pytest.raises(ValueError, match="one image"):
        make_pseudo_targets(class_logits[None], mask_logits[None], filter="ddtf", **THRESH)


def test_target_uses_corrected_labels_and_pmua_weights():
    pt = make_pseudo_targets(*_teacher_outputs(), filter="coupled", **THRESH)
    labels = PseudoLabels(pt, torch.tensor([0, 0]), None)
    target = labels.target(pmua=True)
    assert target["labels"].tolist() == [0, 0]
    assert torch.equal(target["pixel_weights"], 1 - pt.uncertainty)
    assert "pixel_weights" not in labels.target(pmua=False)


def test_teacher_step_without_dicc_keeps_the_filters_queries_and_classes():
    class_logits, mask_logits = _teacher_outputs()
    pt = make_pseudo_targets(class_logits, mask_logits, filter="coupled", **THRESH)
    (labels,) = label_outputs(class_logits[None], mask_logits[None], torch.zeros(1, 3, 8, 8),
                             thresholds=Thresholds("coupled", **THRESH))
    assert torch.equal(labels.kept.keep_idx, pt.keep_idx) and torch.equal(labels.labels, pt.labels)
    assert labels.clip_probs is None and labels.n_dicc_changed == 0


def test_uncertain_queries_are_the_dropped_likely_objects():
    class_logits, mask_logits = _teacher_outputs()
    pt = make_pseudo_targets(class_logits, mask_logits, filter="ddtf", **THRESH)  # keeps q0
    labels, masks = uncertain_queries(class_logits, mask_logits, pt.keep_idx, c_min=0.5)
    # q1 (c 0.9, m 0.8 < m_t) is dropped by DDTF but likely an object; q2 (c 0.05) is not
    assert labels.tolist() == [0] and masks.tolist() == [[[1.0, 0.0], [0.0, 0.0]]]
    # q2 (all four pixels) overlaps neither q0 nor q1 at IoU > 0.5: at c_min 0 it is taken too
    labels, _ = uncertain_queries(class_logits, mask_logits, pt.keep_idx, c_min=0.0)
    assert len(labels) == 2
    # a duplicate of a kept pseudo-label is no ignore target: it should stay "no object"
    dup_logits = torch.cat([class_logits, class_logits[1:2]])
    dup_masks = torch.cat([mask_logits, mask_logits[0:1]])
    labels, masks = uncertain_queries(dup_logits, dup_masks, pt.keep_idx, c_min=0.5)
    assert labels.tolist() == [0] and masks.tolist() == [[[1.0, 0.0], [0.0, 0.0]]]
    # a mask that lies in padding only is empty, so it is no target of any kind
    valid = torch.tensor([[False, True], [True, True]])
    labels, masks = uncertain_queries(class_logits, mask_logits, pt.keep_idx, c_min=0.5, valid=valid)
    assert labels.shape == (0,) and masks.shape == (0, 2, 2)
