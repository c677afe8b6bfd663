"""The PMUA-weighted BCE (Eq. 11) and the Mask2Former set criterion."""
import math

import pytest
import torch
import torch.nn.functional as F

from pldc_core.losses import SetCriterion, uncertainty_weighted_bce
from pldc_core.method.pseudo_labels import make_pseudo_targets
from pldc_core.method.teacher_step import PseudoLabels

N = 3  # classes


def criterion(**kw):
    kw.setdefault("num_points", 256)
    return SetCriterion(N, **kw)


def box_mask(h, w, y0, y1, x0, x1):
    m = torch.zeros(h, w)
    m[y0:y1, x0:x1] = 1.0
    return m


# --------------------------------------------------------------------------- Eq. 11
def test_uncertainty_weighted_bce_hand_value():
    logits = torch.tensor([0.0, 2.0])
    targets = torch.tensor([1.0, 0.0])
    u = torch.tensor([0.5, 0.0])
    # BCE(0, 1) = ln 2; BCE(2, 0) = ln(1 + e^2); mean of (1 - u) * BCE
    expected = (0.5 * math.log(2) + math.log(1 + math.e ** 2)) / 2  # 1.2367508
    assert uncertainty_weighted_bce(logits, targets, u).item() == pytest.approx(expected, rel=1e-6)


def test_uncertainty_weighted_bce_zero_uncertainty_is_plain_bce():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 6, generator=g) * 3
    targets = (torch.rand(2, 5, 6, generator=g) > 0.5).float()
    plain = F.binary_cross_entropy_with_logits(logits, targets)
    assert torch.allclose(uncertainty_weighted_bce(logits, targets, torch.zeros_like(logits)), plain)


def test_uncertainty_weighted_bce_ignores_fully_uncertain_pixels():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 4, generator=g, requires_grad=True)
    targets = (torch.rand(4, 4, generator=g) > 0.5).float()
    u = torch.zeros(4, 4)
    u[:, 2:] = 1.0  # weight 0 on the right half
    loss = uncertainty_weighted_bce(logits, targets, u)
    loss.backward()
    assert torch.all(logits.grad[:, 2:] == 0) and torch.all(logits.grad[:, :2] != 0)
    changed = logits.detach().clone()
    changed[:, 2:] = 50.0
    assert uncertainty_weighted_bce(changed, targets, u).item() == pytest.approx(loss.item())
    # and it is stable for extreme logits (no inf / nan)
    assert torch.isfinite(uncertainty_weighted_bce(torch.tensor([1e4, -1e4]), torch.tensor([0.0, 1.0]),
                                                   torch.zeros(2)))


# --------------------------------------------------------------------------- criterion
def _targets(scale=1):
    """Two images on a 16x16 canvas (``scale`` times the pixels, same boxes)."""
    def box(*yx):
        return box_mask(16 * scale, 16 * scale, *(v * scale for v in yx))
    return [
        {"labels": torch.tensor([0, 2]), "masks": torch.stack([box(0, 8, 0, 8), box(8, 16, 4, 16)])},
        {"labels": torch.tensor([1]), "masks": box(2, 14, 2, 14)[None]},
    ]


def test_criterion_loss_decreases_when_fitting_logits():
    torch.manual_seed(0)
    class_logits = torch.zeros(2, 5, N + 1, requires_grad=True)
    mask_logits = torch.randn(2, 5, 8, 8).mul(0.1).requires_grad_(True)
    crit = criterion()
    opt = torch.optim.Adam([class_logits, mask_logits], lr=0.2)
    first = None
    for _ in range(25):
        losses = crit(class_logits, mask_logits, _targets())
        first = first if first is not None else {k: v.item() for k, v in losses.items()}
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
    last = crit(class_logits, mask_logits, _targets())
    for key in ("loss", "loss_ce", "loss_mask", "loss_dice"):
        assert last[key].item() < 0.5 * first[key], key
    expected = 2.0 * last["loss_ce"] + 5.0 * last["loss_mask"] + 5.0 * last["loss_dice"]
    assert last["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_criterion_aux_outputs_named_and_summed():
    torch.manual_seed(0)
    cl, ml = torch.randn(2, 4, N + 1), torch.randn(2, 4, 8, 8)
    aux = [(torch.randn(2, 4, N + 1), torch.randn(2, 4, 8, 8)) for _ in range(2)]
    losses = criterion(class_weight=1.0, mask_weight=2.0, dice_weight=3.0)(cl, ml, _targets(), aux)
    assert set(losses) == {"loss", *(f"loss_{t}{s}" for t in ("ce", "mask", "dice") for s in ("", "_0", "_1"))}
    expected = sum(w * losses[f"loss_{t}{s}"] for t, w in (("ce", 1.0), ("mask", 2.0), ("dice", 3.0))
                   for s in ("", "_0", "_1"))
    assert losses["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_criterion_zero_target_images():
    cl = torch.zeros(2, 4, N + 1, requires_grad=True)
    ml = torch.randn(2, 4, 8, 8, requires_grad=True)
    empty = {"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 16, 16),
             "pixel_weights": torch.zeros(0, 16, 16)}
    losses = criterion()(cl, ml, [empty, empty])
    # every query's target is no-object; equal logits give CE = ln(N + 1) (weighted mean)
    assert losses["loss_ce"].item() == pytest.approx(math.log(N + 1), rel=1e-6)
    assert losses["loss_mask"].item() == 0.0 and losses["loss_dice"].item() == 0.0
    losses["loss"].backward()
    assert ml.grad is not None and torch.all(ml.grad == 0)
    # one empty image next to a labeled one
    mixed = criterion()(cl, ml, [empty, _targets()[1]])
    assert mixed["loss_mask"].item() > 0 and torch.isfinite(mixed["loss"])


def test_criterion_targets_at_another_resolution():
    torch.manual_seed(0)
    cl, ml = torch.randn(2, 4, N + 1), torch.randn(2, 4, 8, 8)
    torch.manual_seed(1)
    low = criterion(num_points=4096)(cl, ml, _targets(1))
    torch.manual_seed(1)
    high = criterion(num_points=4096)(cl, ml, _targets(4))  # same boxes, 4x the pixels
    assert high["loss_mask"].item() == pytest.approx(low["loss_mask"].item(), rel=0.05)
    assert high["loss_ce"].item() == pytest.approx(low["loss_ce"].item(), rel=1e-6)


def test_criterion_rejects_bad_targets():
    cl, ml = torch.randn(1, 4, N + 1), torch.randn(1, 4, 8, 8)
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        criterion()(cl, ml, [{"labels": torch.tensor([3]), "masks": torch.zeros(1, 8, 8)}])
    with pytest.raises(ValueError, match="pixel_weights"):
        criterion()(cl, ml, [{"labels": torch.tensor([0]), "masks": torch.zeros(1, 8, 8),
                              "pixel_weights": torch.zeros(1, 4, 4)}])
    with pytest.raises(ValueError, match="class_logits"):
        criterion()(torch.randn(1, 4, N), ml, [{"labels": torch.tensor([0]), "masks": torch.zeros(1, 8, 8)}])


def test_gradient_reaches_the_student_only():
    torch.manual_seed(0)
    teacher_cl = torch.log(torch.tensor([[0.05, 0.9, 0.02, 0.03], [0.1, 0.1, 0.1, 0.7]]))[None]
    teacher_ml = torch.full((1, 2, 8, 8), -6.0)
    teacher_ml[0, 0, 2:6, 2:6] = 6.0
    teacher_cl.requires_grad_(True)
    teacher_ml.requires_grad_(True)
    pt = make_pseudo_targets(teacher_cl[0], teacher_ml[0], filter="ddtf", c_t=0.85, m_t=0.9, s_t=0.765)
    assert len(pt) == 1
    student_cl = torch.randn(1, 3, N + 1, requires_grad=True)
    student_ml = torch.randn(1, 3, 8, 8, requires_grad=True)
    criterion()(student_cl, student_ml, [PseudoLabels(pt, pt.labels, None).target(pmua=True)])["loss"].backward()
    assert teacher_cl.grad is None and teacher_ml.grad is None
    assert student_cl.grad.abs().sum() > 0 and student_ml.grad.abs().sum() > 0


def _one_pair_loss(target_mask, weights, seed=0):
    """One query, one target, so that matching is fixed; the seed fixes the sampled points."""
    cl = torch.tensor([[[2.0, 0.0, 0.0, 0.0]]])
    ml = torch.linspace(-3, 3, 64).reshape(1, 1, 8, 8)
    target = {"labels": torch.tensor([0]), "masks": target_mask[None]}
    if weights is not None:
        target["pixel_weights"] = weights[None]
    torch.manual_seed(seed)
    return criterion(num_points=512)(cl, ml, [target])


def test_pmua_weights_are_read_at_the_target_points():
    h = w = 16
    a = box_mask(h, w, 4, 12, 0, 16)
    b = a.clone()
    b[:, 8:] = 1.0 - b[:, 8:]  # differs from a on the right half only
    weights = torch.zeros(h, w)
    weights[:, :7] = 1.0  # zero on the right half and the column next to it (bilinear reach)
    la, lb = _one_pair_loss(a, weights), _one_pair_loss(b, weights)
    assert la["loss_mask"].item() == pytest.approx(lb["loss_mask"].item(), abs=1e-7)
    # without weights, or through the unweighted dice, the right half does matter
    assert _one_pair_loss(a, None)["loss_mask"].item() != pytest.approx(_one_pair_loss(b, None)["loss_mask"].item())
    assert la["loss_dice"].item() != pytest.approx(lb["loss_dice"].item())


def test_pmua_constant_weights_scale_bce_only():
    a = box_mask(16, 16, 4, 12, 2, 10)
    plain = _one_pair_loss(a, None)
    ones = _one_pair_loss(a, torch.ones(16, 16))
    half = _one_pair_loss(a, torch.full((16, 16), 0.5))
    assert ones["loss_mask"].item() == pytest.approx(plain["loss_mask"].item(), rel=1e-6)
    assert half["loss_mask"].item() == pytest.approx(0.5 * plain["loss_mask"].item(), rel=1e-6)
    assert half["loss_dice"].item() == pytest.approx(plain["loss_dice"].item(), rel=1e-6)


# --------------------------------------------------------------------------- ignore targets (pldc.ignore_c)
def _one_image_two_queries():
    """Query 0 predicts box A (class 0), query 1 predicts box B (class 2); B is only an ignore target."""
    a, b = box_mask(16, 16, 0, 8, 0, 8), box_mask(16, 16, 8, 16, 8, 16)
    class_logits = torch.tensor([[[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 4.0, 0.0]]], requires_grad=True)
    mask_logits = (torch.stack([a, b])[None] * 16 - 8).requires_grad_(True)
    target = {"labels": torch.tensor([0]), "masks": a[None]}
    ignored = {**target, "ignore_labels": torch.tensor([2]), "ignore_masks": b[None]}
    return class_logits, mask_logits, target, ignored


def test_a_query_matched_to_an_ignore_target_gets_no_loss():
    class_logits, mask_logits, target, ignored = _one_image_two_queries()
    criterion()(class_logits, mask_logits, [ignored])["loss"].backward()
    assert torch.all(class_logits.grad[0, 1] == 0) and torch.all(mask_logits.grad[0, 1] == 0)
    assert class_logits.grad[0, 0].abs().sum() > 0 and mask_logits.grad[0, 0].abs().sum() > 0
    # without the ignore target the same query is taught "no object"
    class_logits.grad = None
    criterion()(class_logits, mask_logits, [target])["loss"].backward()
    assert class_logits.grad[0, 1, N] < 0


def test_ignore_targets_leave_the_real_targets_loss_alone():
    class_logits, mask_logits, target, ignored = _one_image_two_queries()
    torch.manual_seed(0)
    with_ignore = criterion()(class_logits, mask_logits, [ignored])
    torch.manual_seed(0)
    plain = criterion()(class_logits, mask_logits, [target])
    # same matched pair, same points: the mask terms agree; the class term drops query 1's no-object term
    assert with_ignore["loss_mask"].item() == pytest.approx(plain["loss_mask"].item(), rel=1e-6)
    assert with_ignore["loss_dice"].item() == pytest.approx(plain["loss_dice"].item(), rel=1e-6)
    expected_ce = F.cross_entropy(class_logits[0, :1], torch.tensor([0]))
    assert with_ignore["loss_ce"].item() == pytest.approx(expected_ce.item(), rel=1e-6)


def test_every_query_ignored_gives_a_finite_zero_class_loss():
    class_logits, mask_logits, _, ignored = _one_image_two_queries()
    only_ignored = {"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 16, 16),
                    "ignore_labels": torch.tensor([0, 2]), "ignore_masks": mask_logits.detach()[0].gt(0).float()}
    losses = criterion()(class_logits, mask_logits, [only_ignored])
    assert losses["loss_ce"].item() == 0.0 and torch.isfinite(losses["loss"])


def test_criterion_rejects_ignore_masks_of_another_size():
    class_logits, mask_logits, _, ignored = _one_image_two_queries()
    with pytest.raises(ValueError, match="ignore_masks"):
        criterion()(class_logits, mask_logits, [{**ignored, "ignore_masks": torch.zeros(1, 8, 8)}])


# --------------------------------------------------------------------------- partial labels (pldc.dicc_partial)
def test_partial_label_ce_is_cross_entropy_where_both_classes_agree():
    from pldc_core.losses import IGNORE, partial_label_ce

    torch.manual_seed(0)
    logits = torch.randn(2, 5, N + 1)
    first = torch.tensor([[0, 3, 2, IGNORE, 3], [1, 1, 3, 0, IGNORE]])
    weight = torch.tensor([1.0, 1.0, 1.0, 0.1])
    expected = F.cross_entropy(logits.transpose(1, 2), first, weight=weight, ignore_index=IGNORE)
    assert partial_label_ce(logits, first, first.clone(), weight).item() == pytest.approx(expected.item(), rel=1e-6)


def test_partial_label_ce_teaches_the_sum_of_the_two_probabilities():
    from pldc_core.losses import partial_label_ce

    probs = torch.tensor([[[0.5, 0.3, 0.15, 0.05], [0.1, 0.1, 0.1, 0.7]]])
    first, second = torch.tensor([[0, 3]]), torch.tensor([[1, 3]])
    loss = partial_label_ce(probs.log(), first, second, torch.tensor([1.0, 1.0, 1.0, 0.1]))
    # (1 * -log(0.5 + 0.3) + 0.1 * -log 0.7) / 1.1
    assert loss.item() == pytest.approx((-math.log(0.8) - 0.1 * math.log(0.7)) / 1.1, rel=1e-5)


def test_second_labels_change_only_the_class_term_of_the_matched_query():
    class_logits, mask_logits, target, _ = _one_image_two_queries()

    def losses(t):
        torch.manual_seed(0)  # the same sampled points
        return criterion()(class_logits, mask_logits, [t])

    same, plain = losses({**target, "second_labels": torch.tensor([0])}), losses(target)
    assert same["loss_ce"].item() == pytest.approx(plain["loss_ce"].item(), rel=1e-6)
    either = losses({**target, "second_labels": torch.tensor([1])})
    assert either["loss_ce"].item() < plain["loss_ce"].item()
    assert either["loss_mask"].item() == pytest.approx(plain["loss_mask"].item(), rel=1e-6)
    with pytest.raises(ValueError, match="second_labels"):
        criterion()(class_logits, mask_logits, [{**target, "second_labels": torch.tensor([N])}])
