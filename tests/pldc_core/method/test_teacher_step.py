import torch

from pldc_core.method.filters import Thresholds
from pldc_core.method.pseudo_labels import make_pseudo_targets
from pldc_core.method.teacher_step import teacher_step


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


def test_dicc_classifies_the_kept_binary_masks_and_fuses_with_w():
    class_logits, mask_logits = _teacher()
    clip = _Clip()
    thresholds = Thresholds("ddtf", 0.85, 0.9, 0.765)
    (labels,) = teacher_step(class_logits, mask_logits, torch.zeros(1, 3, 16, 16), thresholds=thresholds, clip=clip,
                             w=0.5)
    kept = make_pseudo_targets(class_logits[0], mask_logits[0], filter="ddtf", c_t=0.85, m_t=0.9, s_t=0.765)
    assert labels.kept.keep_idx.tolist() == kept.keep_idx.tolist() == [0]
    # the crop is the kept binary mask upsampled bilinearly to the image, > 0.5: its top-left quarter
    # but the inner corner pixel, where the interpolated value is 0.625 * 0.625 < 0.5
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
    (unchanged,) = teacher_step(class_logits, mask_logits, torch.zeros(1, 3, 16, 16), thresholds=thresholds,
                                clip=_Clip(), w=0.0)
    assert unchanged.labels.tolist() == [0] and unchanged.n_dicc_changed == 0


def test_mask_area_threshold_drops_tiny_pseudo_masks_before_dicc():
    class_logits = torch.log(torch.tensor([[0.95, 0.03, 0.02]] * 2))[None]  # 2 confident queries
    mask_logits = torch.full((1, 2, 4, 4), -8.0)
    mask_logits[0, 0, :2, :2] = 8.0   # 63 pixels at 16 x 16 (see the test above)
    mask_logits[0, 1, 3, 3] = 8.0     # one low-res corner pixel: 15 pixels at 16 x 16
    thresholds = Thresholds("ddtf", 0.85, 0.9, 0.765)
    image = torch.zeros(1, 3, 16, 16)
    (everything,) = teacher_step(class_logits, mask_logits, image, thresholds=thresholds)
    assert everything.kept.keep_idx.tolist() == [0, 1]
    clip = _Clip()
    (filtered,) = teacher_step(class_logits, mask_logits, image, thresholds=thresholds, clip=clip, w=0.5,
                               min_mask_area=15)
    assert filtered.kept.keep_idx.tolist() == [0] and filtered.kept.masks.shape[0] == 1
    assert len(clip.masks[0]) == 1 and filtered.kept.n_ddtf == 2  # DICC saw only the big one
    (strict,) = teacher_step(class_logits, mask_logits, image, thresholds=thresholds, min_mask_area=63)
    assert len(strict) == 0  # "<= threshold" is dropped
