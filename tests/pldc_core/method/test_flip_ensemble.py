from types import SimpleNamespace

import pytest
import torch

from pldc_core.method.filters import Thresholds
from pldc_core.method.flip_ensemble import flip_widths, fuse_views, mirror_within, pair_queries
from pldc_core.method.teacher_step import teacher_step


def test_mirror_within_flips_each_image_and_leaves_its_padding():
    images = torch.arange(2 * 1 * 2 * 6, dtype=torch.float32).reshape(2, 1, 2, 6)
    out = mirror_within(images, [4, 6])
    assert torch.equal(out[0, ..., :4], images[0, ..., :4].flip(-1))
    assert torch.equal(out[0, ..., 4:], images[0, ..., 4:])
    assert torch.equal(out[1], images[1].flip(-1))


def test_flip_widths_round_up_to_whole_mask_cells():
    # stride 4: 10 px -> 3 cells (12 px); 16 px -> 4 cells; never past the canvas
    assert flip_widths([10, 16, 30], canvas_width=32, stride=4) == ([12, 16, 32], [3, 4, 8])


def test_pair_queries_recovers_a_permutation_of_the_masks():
    masks = torch.zeros(3, 4, 4)
    masks[0, :2, :2] = 1
    masks[1, 2:, :] = 1
    masks[2, :2, 2:] = 1
    perm = torch.tensor([2, 0, 1])
    # view B holds A's query perm[k] at index k, so A's query i is B's query perm.argsort()[i]
    assert pair_queries(masks, masks[perm]).tolist() == perm.argsort().tolist()


def _mirror_consistent_outputs():
    """Outputs on an image and on its mirror from a teacher that is exactly mirror-equivariant, with
    its queries in another order on the mirror."""
    g = torch.Generator().manual_seed(0)
    class_logits = torch.randn(1, 4, 3, generator=g)
    mask_logits = torch.randn(1, 4, 6, 8, generator=g) * 4
    perm = torch.tensor([3, 1, 0, 2])
    return class_logits, mask_logits, class_logits[:, perm], mask_logits[:, perm].flip(-1)


def test_fusing_two_views_that_agree_gives_the_first_view_back():
    class_logits, mask_logits, flip_cls, flip_masks = _mirror_consistent_outputs()
    fused_cls, fused_masks = fuse_views(class_logits, mask_logits, flip_cls, flip_masks, [8])
    assert torch.allclose(fused_cls.softmax(-1), class_logits.softmax(-1), atol=1e-6)
    assert torch.allclose(fused_masks.sigmoid(), mask_logits.sigmoid(), atol=1e-5)


def test_fusing_averages_the_probabilities_of_views_that_disagree():
    class_logits = torch.log(torch.tensor([[[0.9, 0.05, 0.05]]]))   # one query, N = 2
    flip_cls = torch.log(torch.tensor([[[0.5, 0.4, 0.1]]]))
    mask_logits = torch.full((1, 1, 2, 4), -9.0)
    mask_logits[..., :2] = 9.0                      # left half
    flip_masks = torch.full((1, 1, 2, 4), -9.0)
    flip_masks[..., 3:] = 9.0                       # on the mirror: the right quarter = the left quarter
    fused_cls, fused_masks = fuse_views(class_logits, mask_logits, flip_cls, flip_masks, [4])
    assert torch.allclose(fused_cls.softmax(-1), torch.tensor([[[0.7, 0.225, 0.075]]]), atol=1e-6)
    p = fused_masks.sigmoid()[0, 0, 0]
    assert p[0].item() == pytest.approx(1.0, abs=1e-3)      # both views
    assert p[1].item() == pytest.approx(0.5, abs=1e-3)      # one view of two
    assert p[2:].max().item() < 1e-3


def test_mask_columns_past_the_mirrored_width_keep_the_first_views_masks():
    class_logits, mask_logits, flip_cls, _ = _mirror_consistent_outputs()
    flip_masks = torch.randn_like(mask_logits)
    _, fused = fuse_views(class_logits, mask_logits, class_logits, flip_masks, [5])
    # the first view's masks and the paired mirror's agree past column 5 only if the first view's are kept there
    j = pair_queries(mask_logits[0].sigmoid(), torch.cat([flip_masks[0, ..., :5].flip(-1),
                                                           mask_logits[0, ..., 5:]], -1).sigmoid())
    expected = (mask_logits[0, ..., 5:].sigmoid() + mask_logits[0, j][..., 5:].sigmoid()) / 2
    assert torch.allclose(fused[0, ..., 5:].sigmoid(), expected, atol=1e-5)


class _MirrorTeacher(torch.nn.Module):
    """A stand-in teacher: query k's mask is the image's own channel 0 > 0 shifted by k columns, so
    its outputs on a mirrored image are not the mirror of its outputs; remembers its inputs."""

    mask_stride = 2

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, images):
        self.seen.append(images.clone())
        b, _, h, w = images.shape
        base = torch.where(images[:, 0] > 0, 6.0, -6.0)[:, None, ::2, ::2]       # stride 2
        masks = torch.cat([base.roll(k, dims=-1) for k in range(3)], 1)
        class_logits = torch.log(torch.tensor([0.96, 0.02, 0.02])).repeat(b, 3, 1)
        return SimpleNamespace(class_logits=class_logits, mask_logits=masks)


def test_teacher_step_with_flip_labels_the_mirror_within_each_images_real_width():
    images = torch.full((1, 3, 8, 8), -1.0)
    images[0, :, 2:4, 0:2] = 1.0                       # an object at the left edge
    teacher = _MirrorTeacher()
    thresholds = Thresholds("ddtf", 0.85, 0.5, 0.4)
    plain = teacher_step(teacher, images, image_hw=[(8, 6)], thresholds=thresholds)
    teacher.seen.clear()
    step = teacher_step(teacher, images, image_hw=[(8, 6)], thresholds=thresholds, flip=True)
    (both,) = teacher.seen                            # one pass: the images, then their mirrors
    first, mirrored = both[:1], both[1:]
    assert torch.equal(first, images)
    assert torch.equal(mirrored[0, :, :, :6], images[0, :, :, :6].flip(-1))   # 6 px = 3 whole cells at stride 2
    assert torch.equal(mirrored[0, :, :, 6:], images[0, :, :, 6:])
    # the object sits in mask cell 0, its mirror in cell 2. Query 0 (no shift) agrees with its mirror
    # and keeps its mask. Query 1 (cell 1) sees the mirror at cell 3, in the padding past the
    # mirrored width: its fused mask is half-sure (0.5) where it was sure, and DDTF's mask quality
    # drops it. Query 2 (cell 2) sees the mirror wrap round to cell 0, which flips back to cell 2.
    assert torch.allclose(step.mask_logits[0, 0].sigmoid(), plain.mask_logits[0, 0].sigmoid(), atol=1e-4)
    assert step.mask_logits[0, 1, 1, 1].sigmoid().item() == pytest.approx(0.5, abs=0.01)
    assert plain.pseudo_labels[0].kept.keep_idx.tolist() == [0, 1, 2]
    assert step.pseudo_labels[0].kept.keep_idx.tolist() == [0, 2]
