"""The box-wise query rows equal the whole-map reference (``reference_rows``) on fabricated teachers."""
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pldc_core.records import rows
from pldc_core.records.mask_rles import mask_rle_strings
from pldc_core.rle import decode_rle
from tests.pldc_core.records.reference_rows import reference_query_columns

EXACT = ("image_id", "query", "pred_class", "c", "top5_classes", "top5_probs", "mask_rle", "height", "width",
         "area", "bbox", "keep_ddtf", "keep_coupled", "gt_id", "gt_class", "iou", "error_type")
CLOSE = ("m", "s", "unc_mean_inside", "unc_mean_boundary", "unc_mean_overlap")


def _blobs(gen: torch.Generator, Q: int, h: int, w: int) -> torch.Tensor:
    """Mask logits of every kind a teacher gives: round blobs (tiny to larger than the map, some
    centred on or past the border), steep and flat ones, noise, all-negative maps far below and
    just below 0, all-positive maps, one positive pixel in a corner, exact zeros."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    out = torch.empty(Q, h, w)
    for q in range(Q):
        kind = q % 9
        cy, cx = (torch.rand(2, generator=gen) * 1.4 - 0.2) * torch.tensor([h, w])
        radius = torch.rand(1, generator=gen).item() * max(h, w) * (0.05 if kind == 1 else 0.6)
        slope = 0.3 + 5 * torch.rand(1, generator=gen).item()
        out[q] = (radius - ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()) * slope
        if kind == 3:
            out[q] = torch.randn(h, w, generator=gen) * 3
        elif kind == 4:
            out[q] = -3.0 - torch.rand(h, w, generator=gen) * (12.0 if q % 2 else 1.0)
        elif kind == 5:
            out[q] = 0.5 + torch.rand(h, w, generator=gen) * 8
        elif kind == 6:
            out[q] = -9.0
            out[q, -1, -1] = 2.0
        elif kind == 7:
            out[q, :, : max(1, w // 3)] = 0.0
    return out


def _case(seed: int, Q: int, h: int, w: int, H: int, W: int, area_t: int):
    gen = torch.Generator().manual_seed(seed)
    class_logits = torch.randn(Q, 6, generator=gen) * 2
    class_logits[: Q // 2, 0] += 4  # confident ones: some pass the thresholds
    mask_logits = _blobs(gen, Q, h, w)
    gt_masks = np.zeros((3, H, W), dtype=bool)
    gt_masks[0, : H // 2, : W // 2] = True
    gt_masks[1, H // 3:, W // 4:] = True
    gt_masks[2, H - 1, W - 1] = True
    gt = rows.GroundTruth(gt_masks, np.array([0, 1, 4]), np.array([7, 8, 9]))
    thresholds = {"filter": "ddtf", "c_t": 0.5, "m_t": 0.7, "s_t": 0.4, "mask_area_threshold": area_t}
    return class_logits, mask_logits, dict(thresholds=thresholds, gt=gt, supercategory={k: "a" for k in range(5)})


CASES = [  # seed, Q, h, w (mask logits), H, W (image), mask_area_threshold
    (0, 27, 16, 12, 64, 48, 0), (1, 18, 20, 17, 80, 70, 5), (22, 18, 25, 30, 40, 51, 40), (3, 9, 6, 5, 23, 21, 0),
    (4, 9, 1, 5, 4, 19, 0), (5, 9, 5, 1, 19, 4, 3), (6, 18, 30, 40, 20, 25, 5), (7, 9, 2, 2, 9, 9, 0),
    (18, 36, 64, 48, 256, 192, 5), (9, 9, 12, 12, 12, 12, 0),
]


def _near_zero_pixels(mask_logits: torch.Tensor, H: int, W: int) -> int:
    """Output pixels whose interpolated logit is within 1e-5 of 0 but not 0 (exact zeros agree)."""
    v = F.interpolate(mask_logits.double()[None], size=(H, W), mode="bilinear", align_corners=False)[0].abs()
    return int(((v > 0) & (v < 1e-5)).sum())


@pytest.mark.parametrize("case", CASES, ids=[f"{c[1]}q-{c[2]}x{c[3]}-to-{c[4]}x{c[5]}" for c in CASES])
def test_rows_equal_the_whole_map_reference(case):
    seed, Q, h, w, H, W, area_t = case
    class_logits, mask_logits, kw = _case(seed, Q, h, w, H, W, area_t)
    # The two upsample differently (OpenCV in float32, here in float64): they may differ where an
    # interpolated logit is within rounding of 0. These cases have none (see the next test).
    assert _near_zero_pixels(mask_logits, H, W) == 0
    new = rows.query_columns(3, class_logits, mask_logits, (H, W), **kw)
    ref = reference_query_columns(3, class_logits, mask_logits, (H, W), **kw)
    assert set(new) == set(ref)
    for name in EXACT:
        np.testing.assert_array_equal(np.asarray(new[name]), np.asarray(ref[name]), err_msg=name)
    for name in CLOSE:
        np.testing.assert_allclose(new[name], ref[name], rtol=2e-6, atol=1e-7, err_msg=name)
    for a, b in zip(new["unc_png"], ref["unc_png"]):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(a))), np.asarray(Image.open(io.BytesIO(b))))
    assert new["keep_ddtf"].any() and not new["keep_ddtf"].all()
    assert (new["area"] == 0).any() and (new["area"] == H * W).any()
    assert rows.queries_table([new]).num_rows == Q


def test_masks_are_exactly_the_float64_interpolation_and_the_reference_up_to_rounding():
    gen = torch.Generator().manual_seed(11)
    for Q, h, w, H, W in [(40, 32, 24, 80, 60), (40, 50, 40, 427, 640), (20, 3, 70, 11, 300)]:
        logits = torch.randn(Q, h, w, generator=gen) * 3 + torch.randn(Q, 1, 1, generator=gen) * 2
        exact = F.interpolate(logits.double()[None], size=(H, W), mode="bilinear", align_corners=False)[0]
        L = logits.numpy()
        strings = mask_rle_strings(L, (H, W), L.max(axis=2), L.max(axis=1))
        got = np.stack([decode_rle(s, H, W) for s in strings])
        np.testing.assert_array_equal(got, (exact > 0).numpy())
        from tests.pldc_core.records.reference_rows import upsampled_masks

        differ = got != upsampled_masks(logits, (H, W))
        assert (exact.abs().numpy()[differ] < 1e-5).all()  # OpenCV's float32 rounding, nothing else


def test_reference_boundary_erosion_is_the_iterated_3x3_erosion():
    from scipy import ndimage

    from tests.pldc_core.records.reference_rows import eroded

    rng = np.random.default_rng(0)
    masks = rng.random((6, 23, 17)) > 0.25
    masks[0] = True           # touches every border: the border is not a boundary
    masks[1] = False          # empty
    masks[2, 5:15, 3:12] = True
    for width in (1, 2, 3):
        expected = ndimage.binary_erosion(masks, structure=np.ones((1, 3, 3), dtype=bool), iterations=width,
                                          border_value=1)
        np.testing.assert_array_equal(eroded(masks, width), expected)
