from pathlib import Path

import pytest
import torch
from transformers.models.mask2former import modeling_mask2former as m2f

from pldc_core.config import load_config
from pldc_core.model import deformable_attention
from pldc_core.model.mask2former import build_model

ROOT = Path(__file__).resolve().parents[3]
SHAPES = [(2, 3), (4, 4), (8, 6)]  # non-square levels catch a swapped x / y


def _inputs(batch=2, heads=2, head_dim=4, points=3, spread=0.2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    tokens = sum(h * w for h, w in SHAPES)
    value = torch.randn(batch, tokens, heads, head_dim, generator=gen, dtype=torch.float64)
    # locations reach past [0, 1] by `spread` on each side: zero padding must match grid_sample's
    loc = torch.rand(batch, tokens, heads, len(SHAPES), points, 2, generator=gen, dtype=torch.float64)
    loc = loc * (1 + 2 * spread) - spread
    weights = torch.softmax(torch.randn(batch, tokens, heads, len(SHAPES) * points, generator=gen,
                                        dtype=torch.float64), -1).view(batch, tokens, heads, len(SHAPES), points)
    return [t.requires_grad_() for t in (value, loc, weights)]


def _reference():
    deformable_attention.install()
    return deformable_attention._original


def test_dense_attention_equals_transformers_grid_sample_values_and_gradients():
    reference = _reference()
    value, loc, weights = _inputs()
    ours = deformable_attention.dense_deformable_attention(value, SHAPES, loc, weights)
    theirs = reference(value, SHAPES, loc, weights)
    assert ours.shape == theirs.shape == (2, value.shape[1], 8)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(ours)
    for g_ours, g_theirs in zip(torch.autograd.grad(ours, (value, loc, weights), grad),
                                torch.autograd.grad(theirs, (value, loc, weights), grad)):
        torch.testing.assert_close(g_ours, g_theirs, rtol=1e-8, atol=1e-8)


def test_locations_outside_the_map_contribute_nothing():
    value, loc, weights = _inputs()
    with torch.no_grad():
        loc[..., 0] = 1.5  # every point right of every level: bilinear sampling with zero padding gives 0
    out = deformable_attention.dense_deformable_attention(value, SHAPES, loc, weights)
    assert torch.count_nonzero(out) == 0


def test_spatial_shapes_that_do_not_cover_the_tokens_are_refused():
    value, loc, weights = _inputs()
    with pytest.raises(ValueError, match="tokens"):
        deformable_attention.dense_deformable_attention(value, SHAPES[:2], loc[:, :, :, :2], weights[:, :, :, :2])


def test_large_inputs_keep_transformers_computation(monkeypatch):
    reference = _reference()
    calls = []
    monkeypatch.setattr(deformable_attention, "_original", lambda *a: calls.append(1) or reference(*a))
    value, loc, weights = _inputs()
    m2f.multi_scale_deformable_attention(value, SHAPES, loc, weights)
    assert calls == []  # small: the dense path
    monkeypatch.setattr(deformable_attention, "DENSE_LIMIT", 10)
    m2f.multi_scale_deformable_attention(value, SHAPES, loc, weights)
    assert calls == [1]


def test_building_a_model_routes_its_pixel_decoder_through_the_dense_path(monkeypatch):
    model = build_model(load_config(ROOT / "configs" / "smoke.yaml").model, 3).eval()
    calls = []
    dense = deformable_attention.dense_deformable_attention
    monkeypatch.setattr(deformable_attention, "dense_deformable_attention", lambda *a: calls.append(1) or dense(*a))
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fast = model(images).mask_logits
        assert len(calls) == len(model.net.model.pixel_level_module.decoder.encoder.layers)
        deformable_attention.uninstall()
        try:
            slow = model(images).mask_logits
        finally:
            deformable_attention.install()
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)


def test_dense_path_runs_under_bfloat16_autocast():
    # train.amp_cpu: the linear layers hand bfloat16 values and float32 locations to the attention
    model = build_model(load_config(ROOT / "configs" / "smoke.yaml").model, 3).eval()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model(images).mask_logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(images).mask_logits
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()
    # bfloat16 keeps 8 bits of mantissa: the mask logits agree to a few hundredths
    torch.testing.assert_close(low.float(), reference, rtol=0, atol=0.25)


def test_bfloat16_locations_on_maps_of_more_than_256_tokens_stay_exact():
    # bfloat16 holds integers exactly only up to 256: flat token indices must not be computed in it
    shapes = [(8, 8), (16, 16), (32, 32)]
    tokens = sum(h * w for h, w in shapes)
    gen = torch.Generator().manual_seed(1)
    value = torch.randn(1, tokens, 1, 4, generator=gen)
    loc = torch.rand(1, tokens, 1, 3, 2, 2, generator=gen)
    loc[0, :4, 0, 2, 0] = torch.tensor([[0.999, 0.999], [0.99, 0.999], [0.999, 0.98], [0.5, 0.999]])
    weights = torch.full((1, tokens, 1, 3, 2), 1 / 6)
    low = deformable_attention.dense_deformable_attention(value, shapes, loc.bfloat16(), weights.bfloat16())
    high = deformable_attention.dense_deformable_attention(value, shapes, loc.bfloat16().float(), weights.bfloat16().float())
    torch.testing.assert_close(low, high)
