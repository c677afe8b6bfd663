import pytest
import torch
import torch.nn.functional as torch_f

from pldc_core.data.augment import AugmentedView, EvalResize, StrongPhotometric, TrainAugment, unpad_and_resize

COLOURS = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])


def painted_scene(height=60, width=90):
    """Grey image with four rectangles, each painted its own colour; masks are the rectangles."""
    boxes = [(5, 30, 5, 40), (35, 58, 10, 35), (10, 50, 50, 85), (52, 58, 55, 88)]
    image = torch.full((3, height, width), 0.5)
    masks = torch.zeros((len(boxes), height, width), dtype=torch.bool)
    for k, (y0, y1, x0, x1) in enumerate(boxes):
        masks[k, y0:y1, x0:x1] = True
        image[:, y0:y1, x0:x1] = COLOURS[k][:, None, None]
    return image, masks


def interior(mask):
    """Mask pixels whose 8 neighbours are all in the mask (one pixel of erosion; the crop's
    border counts as outside, since the instance may end just beyond it)."""
    outside = torch_f.pad((~mask)[None].float(), (1, 1, 1, 1), value=1.0)
    grown_outside = torch_f.max_pool2d(outside, 3, stride=1)[0]
    return grown_outside == 0


def coordinate_image(height, width):
    """Channel 0 = row / 255, channel 1 = column / 255: the crop offset can be read off pixel (0, 0)."""
    rows = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    cols = torch.arange(width, dtype=torch.float32)[None, :].expand(height, width)
    return torch.stack([rows, cols, torch.zeros(height, width)]) / 255


def test_output_types_sizes_and_top_left_valid_region():
    aug = TrainAugment(48)
    for seed, (h, w) in enumerate([(60, 90), (90, 60), (7, 200), (300, 40), (48, 48), (5, 5)]):
        torch.manual_seed(seed)
        masks = torch.zeros((2, h, w), dtype=torch.bool)
        masks[0, : h // 2] = True
        masks[1, h // 2:] = True
        view = aug(torch.rand(3, h, w), masks)
        assert isinstance(view, AugmentedView)
        assert view.image.shape == (3, 48, 48) and view.image.dtype == torch.float32
        assert view.masks.dtype == torch.bool and view.masks.shape[1:] == (48, 48)
        assert view.keep.dtype == torch.long and view.keep.shape == (view.masks.shape[0],)
        assert view.valid.dtype == torch.bool and view.valid.shape == (48, 48)
        # padding is bottom/right only, so the valid region is a top-left rectangle
        n_rows, n_cols = int(view.valid.any(1).sum()), int(view.valid.any(0).sum())
        expected = torch.zeros(48, 48, dtype=torch.bool)
        expected[:n_rows, :n_cols] = True
        assert torch.equal(view.valid, expected)
        assert (view.image[:, ~view.valid] == 0).all()
        assert not (view.masks & ~view.valid).any()


def test_padding_hand_worked():
    # 40x20 image, target 40, scale fixed at 0.5: r = min(40/40, 40/20) * 0.5 = 0.5 -> 20x10,
    # so no crop (offsets 0) and padding below row 20 and right of column 10.
    aug = TrainAugment(40, scale_range=(0.5, 0.5), flip_p=0.0)
    image = torch.full((3, 40, 20), 0.7)
    masks = torch.ones((1, 40, 20), dtype=torch.bool)
    view = aug(image, masks)
    expected_valid = torch.zeros(40, 40, dtype=torch.bool)
    expected_valid[:20, :10] = True
    assert torch.equal(view.valid, expected_valid)
    assert torch.equal(view.masks[0], expected_valid)
    assert torch.allclose(view.image[:, :20, :10], torch.tensor(0.7))
    assert torch.equal(view.image[:, ~expected_valid], torch.zeros(3, 40 * 40 - 200))


def test_masks_and_image_move_together():
    image, masks = painted_scene()
    aug = TrainAugment(64)
    checked = 0
    for seed in range(25):
        torch.manual_seed(seed)
        view = aug(image, masks)
        for j, k in enumerate(view.keep.tolist()):
            core = interior(view.masks[j])
            if not core.any():
                continue
            colours = view.image[:, core].T
            # bilinear blending can only touch a mask's rim; the interior is the pure colour
            assert torch.allclose(colours, COLOURS[k].expand_as(colours), atol=0.02), (seed, k)
            checked += 1
    assert checked > 40


def test_upscaled_masks_are_nearest_neighbour():
    # 20x20 -> target 40 with scale 1: r = 2, every source pixel becomes a 2x2 block.
    torch.manual_seed(0)
    masks = torch.rand(3, 20, 20) > 0.5
    view = TrainAugment(40, scale_range=(1.0, 1.0), flip_p=0.0)(torch.rand(3, 20, 20), masks)
    expected = masks.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    assert torch.equal(view.keep, torch.arange(3))
    assert torch.equal(view.masks, expected)


def test_forced_flip_is_torch_flip_and_no_flip_is_identity():
    torch.manual_seed(0)
    image = torch.rand(3, 32, 32)
    masks = torch.rand(2, 32, 32) > 0.5
    # a 32x32 image with target 32 and scale 1 is not resized and not cropped
    flipped = TrainAugment(32, scale_range=(1.0, 1.0), flip_p=1.0)(image, masks)
    assert torch.equal(flipped.image, torch.flip(image, [-1]))
    assert torch.equal(flipped.masks, torch.flip(masks, [-1]))
    same = TrainAugment(32, scale_range=(1.0, 1.0), flip_p=0.0)(image, masks)
    assert torch.equal(same.image, image) and torch.equal(same.masks, masks)
    assert same.valid.all()


def test_random_flip_happens_about_half_the_time():
    image = torch.rand(3, 16, 16)
    masks = image[:1] > 0.5
    aug = TrainAugment(16, scale_range=(1.0, 1.0))
    flips = 0
    for seed in range(40):
        torch.manual_seed(seed)
        view = aug(image, masks)
        is_flip = torch.equal(view.image, torch.flip(image, [-1]))
        assert is_flip or torch.equal(view.image, image)
        assert torch.equal(view.masks, torch.flip(masks, [-1]) if is_flip else masks)
        flips += is_flip
    assert 8 <= flips <= 32


def test_keep_indices_when_instances_are_cropped_away():
    # 100x100, target 50, scale 2: r = 1 (no resize), then a 50x50 crop at top, left in [0, 50].
    image = coordinate_image(100, 100)
    masks = torch.zeros((4, 100, 100), dtype=torch.bool)
    masks[0, :10, :10] = True  # visible iff top < 10 and left < 10
    masks[1, 90:, 90:] = True  # visible iff top > 40 and left > 40
    masks[2, 45:55, 45:55] = True  # always visible
    # masks[3] is empty from the start: always dropped
    aug = TrainAugment(50, scale_range=(2.0, 2.0), flip_p=0.0)
    seen = set()
    for seed in range(60):
        torch.manual_seed(seed)
        view = aug(image, masks)
        top, left = round(view.image[0, 0, 0].item() * 255), round(view.image[1, 0, 0].item() * 255)
        expected = [k for k, visible in enumerate([top < 10 and left < 10, top > 40 and left > 40, True, False])
                    if visible]
        assert view.keep.tolist() == expected
        assert torch.equal(view.masks, masks[expected][:, top:top + 50, left:left + 50])
        assert view.valid.all()
        seen.add(tuple(expected))
    assert {(2,), (0, 2), (1, 2)} <= seen


def test_no_instances():
    torch.manual_seed(0)
    view = TrainAugment(32)(torch.rand(3, 40, 50), torch.zeros((0, 40, 50), dtype=torch.bool))
    assert view.image.shape == (3, 32, 32)
    assert view.masks.shape == (0, 32, 32) and view.masks.dtype == torch.bool
    assert view.keep.shape == (0,) and view.keep.dtype == torch.long
    assert view.valid.any()


def test_same_seed_same_views():
    image, masks = painted_scene()
    aug, strong = TrainAugment(64), StrongPhotometric()

    def run(seed):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            view = aug(image, masks)
            return view, strong(view.image)

    (v1, s1), (v2_, s2) = run(3), run(3)
    assert torch.equal(v1.image, v2_.image) and torch.equal(v1.masks, v2_.masks)
    assert torch.equal(v1.keep, v2_.keep) and torch.equal(v1.valid, v2_.valid)
    assert torch.equal(s1, s2)
    others = [run(seed)[1] for seed in range(4, 8)]
    assert any(not torch.equal(s1, other) for other in others)


def test_cutout_only_leaves_every_other_pixel_unchanged():
    strong = StrongPhotometric(color_jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, cutout_p=(1.0, 1.0, 1.0))
    for seed in range(10):
        torch.manual_seed(seed)
        image = 0.2 + 0.8 * torch.rand(3, 48, 48)  # never 0, so erased pixels are recognisable
        before = image.clone()
        out = strong(image)
        assert torch.equal(image, before), "the input must not be modified"
        erased = (out == 0).all(0)
        assert torch.equal(out[:, ~erased], image[:, ~erased])
        # three patches of at most 20% of the image each
        assert 0 < erased.float().mean() <= 0.6


def test_strong_view_keeps_weak_geometry_peak():
    # A grey image with one smooth peak through the weak view, then the strong photometric ops:
    # on grey pixels colour jitter is a monotone per-pixel map and the blur is symmetric, so the
    # peak stays put (up to 1 px: blurring a sampled peak can tip a near-tie between two pixels).
    height, width = 70, 50
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    cols = torch.arange(width, dtype=torch.float32)[None, :]
    aug = TrainAugment(64)
    strong = StrongPhotometric(cutout_p=(0.0, 0.0, 0.0))
    checked = 0
    for seed in range(15):
        torch.manual_seed(seed)
        r0, c0 = torch.randint(10, height - 10, ()).item(), torch.randint(10, width - 10, ()).item()
        peak = 0.1 + 0.4 * torch.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / 60)
        view = aug(peak.expand(3, height, width).contiguous(), torch.zeros((0, height, width), dtype=torch.bool))
        weak_gray, strong_gray = view.image.mean(0), strong(view.image).mean(0)
        if weak_gray.max() < weak_gray[view.valid].min() + 0.2:  # the peak was cropped away
            continue
        weak_at = torch.tensor(divmod(int(weak_gray.argmax()), 64))
        strong_at = torch.tensor(divmod(int(strong_gray.argmax()), 64))
        assert (weak_at - strong_at).abs().max() <= 1, (seed, weak_at, strong_at)
        checked += 1
    assert checked >= 8


def test_strong_view_keeps_edges_in_place():
    # Grey stripes 16 px wide in both directions (levels 0.3 / 0.45 / 0.6: no clamping under
    # the jitter ranges). Colour jitter keeps grey monotone and the blur kernel is symmetric,
    # so the steepest step stays exactly on each stripe boundary.
    index = torch.arange(64)
    stripes = ((index // 16) % 2).float()
    gray = 0.3 + 0.15 * stripes[None, :] + 0.15 * stripes[:, None]
    strong = StrongPhotometric(cutout_p=(0.0, 0.0, 0.0))
    for seed in range(10):
        torch.manual_seed(seed)
        out = strong(gray.expand(3, 64, 64).contiguous()).mean(0)
        for steps in (out.diff(dim=1).abs(), out.diff(dim=0).abs().T):  # per row / per column
            for boundary in (16, 32, 48):  # the step between pixel boundary-1 and boundary
                window = steps[:, boundary - 8: boundary + 8]
                assert (window.argmax(dim=1) == 7).all(), (seed, boundary)


def test_blur_sigma_sets_how_far_the_blur_spreads_an_edge():
    # A vertical step edge blurred with sigma fixed at 2 px spreads over several columns; at
    # 0.25 px (the paper's 2 px scaled to a 128 px canvas) it stays a step within one column.
    image = torch.zeros(3, 32, 32)
    image[:, :, 16:] = 1.0
    only_blur = dict(color_jitter_p=0.0, grayscale_p=0.0, blur_p=1.0, cutout_p=(0.0, 0.0, 0.0))
    wide = StrongPhotometric(blur_sigma=(2.0, 2.0), **only_blur)(image)[0, 16]
    narrow = StrongPhotometric(blur_sigma=(0.25, 0.25), **only_blur)(image)[0, 16]
    def spread(row):
        return int(((row > 0.01) & (row < 0.99)).sum())
    assert spread(wide) >= 6
    assert spread(narrow) == 0
    assert torch.allclose(narrow, image[0, 16], atol=0.01)


def test_strong_output_range_and_padding_reset():
    torch.manual_seed(0)
    image = torch.rand(3, 32, 32)
    valid = torch.zeros(32, 32, dtype=torch.bool)
    valid[:20, :25] = True
    image[:, ~valid] = 0
    strong = StrongPhotometric(color_jitter_p=1.0)
    for _ in range(10):
        out = strong(image, valid)
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32
        assert 0 <= out.min() and out.max() <= 1
        assert (out[:, ~valid] == 0).all()


def test_bad_inputs_raise_clear_errors():
    aug = TrainAugment(32)
    with pytest.raises(ValueError, match=r"masks must be bool \[K, 20, 30\]"):
        aug(torch.rand(3, 20, 30), torch.zeros((1, 20, 31), dtype=torch.bool))
    with pytest.raises(ValueError, match="masks must be bool"):
        aug(torch.rand(3, 20, 30), torch.zeros((1, 20, 30), dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        aug(torch.rand(20, 30), torch.zeros((0, 20, 30), dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        EvalResize(32)(torch.zeros(3, 20, 30, dtype=torch.uint8))


def test_eval_resize_keeps_aspect_and_pads_bottom_right():
    resize = EvalResize(80)
    out, hw = resize(torch.full((3, 40, 20), 0.3))
    assert hw == (80, 40) and out.shape == (3, 80, 80)
    assert torch.allclose(out[:, :, :40], torch.tensor(0.3)) and (out[:, :, 40:] == 0).all()
    out, hw = EvalResize(60)(torch.full((3, 30, 61), 0.3))
    assert hw == (30, 60) and (out[:, 30:] == 0).all() and torch.allclose(out[:, :30], torch.tensor(0.3))


def test_unpad_and_resize_hand_worked_crop():
    # padded 8 px, real image 4x8 (top half), logits 4x4 (1/2 scale), original 2x4:
    # output pixel (i, j) has its centre at low-res (i + 0.5, j + 0.5), i.e. exactly on logit (i, j).
    logits = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4)
    out = unpad_and_resize(logits, (4, 8), 8, (2, 4))
    assert torch.allclose(out, logits[:, :2, :4])


def test_unpad_and_resize_without_padding_is_bilinear_interpolate():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 16, 16)
    out = unpad_and_resize(logits, (64, 64), 64, (37, 53))
    expected = torch_f.interpolate(logits, size=(37, 53), mode="bilinear", align_corners=False)
    assert out.shape == (2, 5, 37, 53)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(unpad_and_resize(logits[1], (64, 64), 64, (37, 53)), out[1])
    assert unpad_and_resize(torch.zeros(0, 16, 16), (64, 64), 64, (37, 53)).shape == (0, 37, 53)


@pytest.mark.parametrize("orig_hw", [(45, 70), (70, 45)])
def test_unpad_and_resize_round_trips_a_mask_through_eval_resize(orig_hw):
    h, w = orig_hw
    rows = torch.arange(h, dtype=torch.float32)[:, None]
    cols = torch.arange(w, dtype=torch.float32)[None, :]
    mask = ((rows - h * 0.4) / (h * 0.3)) ** 2 + ((cols - w * 0.6) / (w * 0.25)) ** 2 < 1
    padded, resized_hw = EvalResize(64)(mask.float().expand(3, h, w).contiguous())
    logits = (padded[:1] - 0.5) * 20  # [1, 64, 64], positive inside the mask
    for low in (64, 16):  # full resolution and Mask2Former's 1/4 output
        low_logits = torch_f.interpolate(logits[None], size=(low, low), mode="bilinear", antialias=True)[0]
        back = unpad_and_resize(low_logits, resized_hw, 64, orig_hw)[0] > 0
        iou = (back & mask).sum() / (back | mask).sum()
        assert iou > (0.97 if low == 64 else 0.9), (low, iou)


def test_authors_cutout_fills_patches_with_random_values():
    strong = StrongPhotometric(color_jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, cutout_p=(1.0, 1.0, 1.0),
                               cutout="authors")
    torch.manual_seed(0)
    image = torch.full((3, 48, 48), 0.5)
    out = strong(image)
    changed = (out != 0.5).any(0)
    assert changed.float().mean() > 0.02 and not (out[:, changed] == 0).all()
    with pytest.raises(ValueError, match="cutout must be one of paper, authors"):
        StrongPhotometric(cutout="table")


def test_test_resize_short_side_with_a_long_side_limit_and_full_resolution():
    from pldc_core.data.augment import TestResize

    coco = TestResize((800, 1333), image_size=128)
    assert coco.resized_hw(480, 640) == (800, 1067)
    assert coco.resized_hw(100, 2000) == (67, 1333)  # the long side limit wins
    batch, sizes, padded = coco([torch.rand(3, 480, 640), torch.rand(3, 640, 480)])
    assert sizes == [(800, 1067), (1067, 800)] and padded == (1088, 1088) and batch.shape == (2, 3, 1088, 1088)
    assert not batch[0, :, 800:].any() and not batch[0, :, :, 1067:].any()

    image = torch.rand(3, 40, 70)
    batch, sizes, padded = TestResize("full", image_size=128)([image])
    assert sizes == [(40, 70)] and padded == (64, 96) and torch.equal(batch[0, :, :40, :70], image)
    # logits predicted on the rectangular padded input come back to the image exactly
    logits = torch.zeros(1, 64, 96)
    logits[0, :40, :70] = torch.arange(40 * 70, dtype=torch.float32).view(40, 70)
    torch.testing.assert_close(unpad_and_resize(logits, (40, 70), padded, (40, 70))[0], logits[0, :40, :70])
