from types import SimpleNamespace

import torch

from pldc_core.method.filters import Thresholds
from pldc_core.method.pseudo_labels import make_pseudo_targets
from pldc_core.method.teacher_step import dicc_can_change, label_outputs, teacher_step


class _Clip:
    """Stands in for dicc.ClipClassifier: says class 1 for every crop, and remembers the masks."""

    def __init__(self):
        self.masks = []

    def probs(self, image, masks):
        self.masks.append(masks)
        return torch.tensor([[0.0, 1.0]]).repeat(len(masks), 1)


def _teacher():
    class_logits = torch.log(torch.tensor([[0.9, 0.05, 0.05], [0.3, 0.3, 0.4]]))[None]  # 2 queries, N = 2
    mask_logits = torch.full((1, 2, 4, 4), -8.0)
    mask_logits[0, 0, :2, :2] = 8.0
    return class_logits, mask_logits


def test_dicc_classifies_the_kept_masks_and_fuses_with_w():
    class_logits, mask_logits = _teacher()
    clip = _Clip()
    thresholds = Thresholds("ddtf", 0.85, 0.9, 0.765)
    (labels,) = label_outputs(class_logits, mask_logits, torch.zeros(1, 3, 16, 16), thresholds=thresholds, clip=clip,
                             w=0.5)
    kept = make_pseudo_targets(class_logits[0], mask_logits[0], filter="ddtf", c_t=0.85, m_t=0.9, s_t=0.765)
    assert labels.kept.keep_idx.tolist() == kept.keep_idx.tolist() == [0]
    # the crop is the kept mask drawn at the image's size: the logits upsampled bilinearly, > 0: its
    # top-left quarter but the inner corner pixel, where the three outside cells pull the logit below 0
    expected = torch.zeros(1, 16, 16, dtype=torch.bool)
    expected[0, :8, :8] = True
    expected[0, 7, 7] = False
    assert torch.equal(clip.masks[0], expected)
    # fused = 0.5 * CLIP (class 1) + 0.5 * teacher (class 0 at 0.9 / 0.95): class 1 wins at w = 0.5
    assert labels.labels.tolist() == [1] and labels.n_dicc_changed == 1
    assert labels.clip_probs.tolist() == [[0.0, 1.0]]
    target = labels.target(pmua=True)
    assert target["labels"].tolist() == [1] and torch.equal(target["pixel_weights"], 1 - kept.uncertainty)
    # at w = 0 the teacher's class stands
    (unchanged,) = label_outputs(class_logits, mask_logits, torch.zeros(1, 3, 16, 16), thresholds=thresholds,
                                clip=_Clip(), w=0.0)
    assert unchanged.labels.tolist() == [0] and unchanged.n_dicc_changed == 0


def test_dicc_crops_the_mask_drawn_from_the_logits_not_the_binarised_cells():
    """A soft edge moves the outline: the mask DICC crops is where the upsampled logit is > 0, as
    inference draws it, not the 4-px steps of the cells that are > 0 at the logits' resolution."""
    class_logits = torch.log(torch.tensor([[0.95, 0.03, 0.02]]))[None]
    mask_logits = torch.full((1, 1, 4, 4), -8.0)
    mask_logits[0, 0, :, 0] = 4.0   # column 0 sure, column 1 just below 0.5
    mask_logits[0, 0, :, 1] = -1.0
    clip = _Clip()
    (labels,) = label_outputs(class_logits, mask_logits, torch.zeros(1, 3, 16, 16),
                              thresholds=Thresholds("ddtf", 0.85, 0.9, 0.765), clip=clip, w=0.5)
    assert labels.kept.keep_idx.tolist() == [0]
    # the logit crosses 0 at 4/5 of the way from column 0's centre (2 px) to column 1's (6 px), at 5.2 px:
    # pixel columns 0-4 (centres up to 4.5 px); the binarised cells would give columns 0-3
    expected = torch.zeros(1, 16, 16, dtype=torch.bool)
    expected[0, :, :5] = True
    assert torch.equal(clip.masks[0], expected)
    # the batch's padding is background in the crop too
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    valid[0, 2:] = False
    clip = _Clip()
    label_outputs(class_logits, mask_logits, torch.zeros(1, 3, 16, 16), thresholds=Thresholds("ddtf", 0.85, 0.9, 0.765),
                  clip=clip, w=0.5, valid=valid)
    expected[0, 8:] = False
    assert torch.equal(clip.masks[0], expected)


def test_mask_area_threshold_drops_tiny_pseudo_masks_before_dicc():
    class_logits = torch.log(torch.tensor([[0.95, 0.03, 0.02]] * 2))[None]  # 2 confident queries
    mask_logits = torch.full((1, 2, 4, 4), -8.0)
    mask_logits[0, 0, :2, :2] = 8.0   # 63 pixels at 16 x 16 (see the test above)
    mask_logits[0, 1, 3, 3] = 8.0     # one low-res corner pixel: 15 pixels at 16 x 16
    thresholds = Thresholds("ddtf", 0.85, 0.9, 0.765)
    image = torch.zeros(1, 3, 16, 16)
    (everything,) = label_outputs(class_logits, mask_logits, image, thresholds=thresholds)
    assert everything.kept.keep_idx.tolist() == [0, 1]
    clip = _Clip()
    (filtered,) = label_outputs(class_logits, mask_logits, image, thresholds=thresholds, clip=clip, w=0.5,
                               min_mask_area=15)
    assert filtered.kept.keep_idx.tolist() == [0] and filtered.kept.masks.shape[0] == 1
    assert len(clip.masks[0]) == 1 and filtered.kept.n_ddtf == 2  # DICC saw only the big one
    (strict,) = label_outputs(class_logits, mask_logits, image, thresholds=thresholds, min_mask_area=63)
    assert len(strict) == 0  # "<= threshold" is dropped


def test_dicc_can_change_follows_the_margin_bound():
    # margins 0.8, 0.2, 0.0: at w = 0.3, (1 - w) * margin <= w only for the last two
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.5, 0.3, 0.2], [0.4, 0.4, 0.2]])
    assert dicc_can_change(probs, 0.3).tolist() == [False, True, True]
    assert dicc_can_change(probs, 0.5).tolist() == [True, True, True]
    assert dicc_can_change(probs, 0.0).tolist() == [False, False, True]  # a tie can still flip


class _ClipSays:
    """CLIP stand-in with fixed probabilities per call, recording how many masks it was given."""

    def __init__(self, row):
        self.row, self.sizes = torch.tensor(row), []

    def probs(self, image, masks):
        self.sizes.append(len(masks))
        return self.row.repeat(len(masks), 1)


def test_skip_settled_gives_the_same_classes_and_spares_clip():
    # 3 confident queries, N = 3: margins of p_hat 0.98, 0.5 and 0.02
    p_hat = torch.tensor([[0.99, 0.01, 0.0], [0.7, 0.2, 0.1], [0.5, 0.48, 0.02]])
    class_logits = torch.cat([torch.log(p_hat * 0.97), torch.log(torch.full((3, 1), 0.03))], 1)[None]
    mask_logits = torch.full((1, 3, 4, 4), -8.0)
    mask_logits[0, :, :2, :2] = 8.0
    image = torch.zeros(1, 3, 16, 16)
    thresholds = Thresholds("ddtf", 0.4, 0.9, 0.3)
    for w in (0.45, 0.3, 0.05, 0.0):
        full = label_outputs(class_logits, mask_logits, image, thresholds=thresholds, clip=_ClipSays([0.0, 1.0, 0.0]),
                             w=w)[0]
        clip = _ClipSays([0.0, 1.0, 0.0])
        skipped = label_outputs(class_logits, mask_logits, image, thresholds=thresholds, clip=clip, w=w,
                                skip_settled=True)[0]
        assert skipped.labels.tolist() == full.labels.tolist(), w
        open_ = dicc_can_change(full.kept.probs, w)
        assert clip.sizes == ([int(open_.sum())] if open_.any() else [])
        assert torch.isnan(skipped.clip_probs[~open_]).all() and not torch.isnan(skipped.clip_probs[open_]).any()
    assert full.labels.tolist() == [0, 0, 0]  # w = 0: nothing flips
    # at w = 0.3 the margins 0.98 and 0.5 are settled (0.7 * 0.5 > 0.3); CLIP flips the third
    mid = label_outputs(class_logits, mask_logits, image, thresholds=thresholds, clip=_ClipSays([0.0, 1.0, 0.0]),
                        w=0.3, skip_settled=True)[0]
    assert mid.labels.tolist() == [0, 0, 1]


class _Teacher(torch.nn.Module):
    """A model stand-in returning fixed outputs, remembering what it was given."""

    def __init__(self, class_logits, mask_logits):
        super().__init__()
        self.class_logits, self.mask_logits, self.seen = class_logits, mask_logits, []

    def forward(self, images):
        self.seen.append(images)
        return SimpleNamespace(class_logits=self.class_logits, mask_logits=self.mask_logits)


def test_teacher_step_runs_the_forward_then_labels_its_outputs():
    class_logits, mask_logits = _teacher()
    teacher = _Teacher(class_logits, mask_logits)
    images = torch.zeros(1, 3, 16, 16)
    step = teacher_step(teacher, images, thresholds=Thresholds("ddtf", 0.85, 0.9, 0.765))
    assert teacher.seen[0] is images
    assert torch.equal(step.class_logits, class_logits) and torch.equal(step.mask_logits, mask_logits)
    assert step.pseudo_labels[0].kept.keep_idx.tolist() == [0]


def test_teacher_step_image_sizes_mark_padding_as_inference_crops_it():
    # one query whose mask covers the whole 4 x 4 map; the real image is the top-left 6 x 10 of 16 x 16:
    # mask pixels covering any of it are rows 0-1 (6 * 4 / 16 = 1.5 -> 2) and columns 0-2 (2.5 -> 3)
    class_logits = torch.log(torch.tensor([[0.95, 0.03, 0.02]]))[None]
    mask_logits = torch.full((1, 1, 4, 4), 8.0)
    step = teacher_step(_Teacher(class_logits, mask_logits), torch.zeros(1, 3, 16, 16), image_hw=[(6, 10)],
                        thresholds=Thresholds("ddtf", 0.85, 0.9, 0.765))
    expected = torch.zeros(4, 4)
    expected[:2, :3] = 1.0
    assert torch.equal(step.pseudo_labels[0].kept.masks[0], expected)


def test_partial_targets_take_clips_class_where_it_ran_and_the_label_elsewhere():
    from pldc_core.method.teacher_step import PseudoLabels

    class_logits = torch.full((3, 4), -8.0)
    class_logits[:, 0] = 8.0  # three confident queries of class 0
    mask_logits = torch.full((3, 8, 8), -8.0)
    for q in range(3):
        mask_logits[q, q:q + 3, q:q + 3] = 8.0
    kept = make_pseudo_targets(class_logits, mask_logits, filter="ddtf", c_t=0.85, m_t=0.9, s_t=0.765)
    assert len(kept) == 3
    clip_probs = torch.tensor([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [float("nan")] * 3])  # CLIP skipped the third
    labels = PseudoLabels(kept, kept.labels, clip_probs)
    assert labels.clip_labels.tolist() == [1, 0, 0]
    target = labels.target(pmua=False, partial=True)
    assert target["labels"].tolist() == [0, 0, 0] and target["second_labels"].tolist() == [1, 0, 0]
    assert "second_labels" not in labels.target(pmua=False)
    assert "second_labels" not in PseudoLabels(kept, kept.labels, None).target(pmua=False, partial=True)
