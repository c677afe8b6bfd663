"""Multi-scale deformable attention computed as one dense attention matrix per head, for small inputs.

transformers' pixel decoder computes deformable attention with one ``grid_sample`` per feature level,
then a broadcast multiply and sum over a ``[B*heads, head_dim, queries, levels*points]`` tensor. At
the token counts of small images (336 tokens at 128 px) that broadcast dominates the encoder on a
CPU. The same sum can be written as a sparse-then-dense product: the attention weight of each
sampling point, times its four bilinear corner weights, scattered into a ``[B, heads, queries,
tokens]`` matrix, multiplied by the values. Same mathematics (bilinear sampling with zero padding
and ``align_corners=False``, as ``grid_sample``), same gradients, equal to float rounding;
``benchmarks/bench_deformable_attention.py`` measures the speed-up. The dense matrix grows with the
square of the token count, so large inputs (the paper's 1,024 px images) keep transformers' own
computation: :func:`install` dispatches on that size.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

# Largest dense matrix (batch x heads x queries x tokens entries) built: 2^24 floats are 64 MiB.
DENSE_LIMIT = 1 << 24

_original = None


def dense_deformable_attention(value: torch.Tensor, spatial_shapes: Sequence[tuple[int, int]],
                               sampling_locations: torch.Tensor, attention_weights: torch.Tensor) -> torch.Tensor:
    """Deformable attention as a dense product; arguments and result as transformers'
    ``multi_scale_deformable_attention``: ``value [B, S, H, D]``, ``sampling_locations
    [B, Q, H, L, P, 2]`` in [0, 1] (x, y), ``attention_weights [B, Q, H, L, P]``; returns ``[B, Q, H*D]``."""
    batch, tokens, heads, head_dim = value.shape
    queries = sampling_locations.shape[1]
    # heads before queries from the start, so that the scattered index and weights need no transposed
    # copy; coordinates in float32 at least, whatever autocast hands in (bfloat16 is not exact past 256)
    exact = torch.promote_types(sampling_locations.dtype, torch.float32)
    locations = sampling_locations.transpose(1, 2).to(exact)
    attention = attention_weights.transpose(1, 2).to(exact)
    indices, weights, start = [], [], 0
    for level, (height, width) in enumerate(spatial_shapes):
        # grid_sample's align_corners=False: a location u in [0, 1] lies at pixel coordinate u*size - 0.5
        x = locations[..., level, :, 0] * width - 0.5
        y = locations[..., level, :, 1] * height - 0.5
        x0, y0 = x.floor(), y.floor()
        fx, fy = x - x0, y - y0
        left, right = attention[..., level, :] * (1 - fx), attention[..., level, :] * fx
        corners = ((0, 0, left * (1 - fy)), (1, 0, right * (1 - fy)), (0, 1, left * fy), (1, 1, right * fy))
        for dx, dy, weight in corners:
            xi, yi = x0 + dx, y0 + dy
            # zero padding outside the map (a NaN location is outside too: every comparison is False)
            inside = (xi >= 0) & (xi <= width - 1) & (yi >= 0) & (yi <= height - 1)
            col = torch.where(inside, xi, 0).long()
            row = torch.where(inside, yi, 0).long()
            indices.append(start + row * width + col)
            weights.append(torch.where(inside, weight, 0))
        start += height * width
    if start != tokens:
        raise ValueError(f"spatial shapes {list(spatial_shapes)} hold {start} tokens, value has {tokens}")
    index, weight = torch.cat(indices, -1), torch.cat(weights, -1)  # [B, H, Q, L*P*4]
    dense = torch.zeros(batch, heads, queries, tokens, dtype=weight.dtype, device=weight.device)
    # in place into the fresh zeros: an out-of-place scatter_add copies the whole matrix first
    dense.scatter_add_(-1, index, weight)
    out = torch.matmul(dense, value.transpose(1, 2).to(dense.dtype))  # [B, H, Q, D]
    return out.transpose(1, 2).reshape(batch, queries, heads * head_dim)


def _dispatch(value, value_spatial_shapes, sampling_locations, attention_weights):
    batch, tokens, heads, _ = value.shape
    if batch * heads * sampling_locations.shape[1] * tokens > DENSE_LIMIT:
        return _original(value, value_spatial_shapes, sampling_locations, attention_weights)
    shapes = [(int(h), int(w)) for h, w in value_spatial_shapes]
    return dense_deformable_attention(value, shapes, sampling_locations, attention_weights)


def install() -> None:
    """Route transformers' Mask2Former pixel decoder through :func:`dense_deformable_attention`
    where its dense matrix stays under DENSE_LIMIT entries (idempotent)."""
    global _original
    from transformers.models.mask2former import modeling_mask2former as m2f

    if _original is None:
        _original = m2f.multi_scale_deformable_attention
    m2f.multi_scale_deformable_attention = _dispatch


def uninstall() -> None:
    """Restore transformers' own computation (benchmarks compare the two)."""
    from transformers.models.mask2former import modeling_mask2former as m2f

    if _original is not None:
        m2f.multi_scale_deformable_attention = _original
