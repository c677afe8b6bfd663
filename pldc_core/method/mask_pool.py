"""DICC's mask-pool variant (``pldc.dicc_mode: mask_pool``, docs/METHOD.md "DICC variants").

Instead of one crop per mask, CLIP's image tower runs once on the whole image and stops before
its global pooling, giving a dense feature map; each mask's embedding is the average of the
features under the mask, passed through the rest of the tower's head. Two towers have such a
map:

- a timm ConvNeXt (open_clip's ``convnext_*`` models): the trunk's last feature map; the mask
  average takes the place of the trunk's global average pooling, and the trunk's head (norm)
  and open_clip's projection follow. With a mask covering the whole image this is exactly
  ``encode_image``.
- open_clip's ModifiedResNet (OpenAI's RN50, the embedded small CLIP): the map before the
  attention pool. Attention pooling reads one query token, the map's mean plus the first
  positional embedding, and outputs a convex combination of the value projections, then the
  output projection. Here the mask's mean takes the map mean's place and the attention is
  dropped: the embedding is ``c_proj(v_proj(mean under the mask + pos[0]))``. This is an
  approximation of ``encode_image`` (uniform weights instead of learnt attention), not equal
  to it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PROBE_SIDE = 64  # the side of the random image that finds a tower's stride and checks its head


class NotDense(ValueError):
    """The CLIP's image tower has no dense feature map that mask pooling can read."""


@torch.no_grad()
def mask_pool(features: torch.Tensor, masks: torch.Tensor, stride: int) -> torch.Tensor:
    """Average of ``features [C, h, w]`` under each of ``masks [K, H, W]`` (bool) -> ``[K, C]``.

    Feature cell ``(i, j)`` covers pixels ``[i*stride, (i+1)*stride) x [j*stride, (j+1)*stride)``
    of the masks' canvas (zero-padded at the bottom and right to ``h*stride x w*stride``); it
    weighs by the share of its pixels inside the mask. An empty mask gives a zero row.
    """
    if features.dim() != 3:
        raise ValueError(f"mask_pool: features must be [C, h, w], got {tuple(features.shape)}")
    if masks.dim() != 3 or masks.dtype != torch.bool:
        raise ValueError(f"mask_pool: masks must be bool [K, H, W], got {masks.dtype} {tuple(masks.shape)}")
    _, h, w = features.shape
    height, width = masks.shape[-2:]
    if height > h * stride or width > w * stride:
        raise ValueError(f"mask_pool: masks of {height}x{width} px reach past {h}x{w} feature cells "
                         f"of {stride} px")
    out = []
    for chunk in masks.split(16):  # bounds the float copy of large masks
        cover = F.pad(chunk.to(features.device, torch.float32), (0, w * stride - width, 0, h * stride - height))
        cover = F.avg_pool2d(cover[:, None], stride)[:, 0]  # [k, h, w], share of each cell in the mask
        total = cover.flatten(1).sum(1, keepdim=True)
        out.append(torch.einsum("khw,chw->kc", cover, features.float()) / total.clamp_min(1e-12))
    return torch.cat(out)


class _ResNetTower:
    """open_clip's ModifiedResNet: the map before ``attnpool``, and its value/output projections."""

    def __init__(self, visual):
        self.visual = visual

    def features(self, x: torch.Tensor) -> torch.Tensor:
        v = self.visual
        return v.layer4(v.layer3(v.layer2(v.layer1(v.stem(x)))))

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        pool = self.visual.attnpool
        return pool.c_proj(pool.v_proj(pooled + pool.positional_embedding[0].to(pooled.dtype)))


class _TimmTower:
    """open_clip's TimmModel: the trunk's ``forward_features``, then its head and open_clip's projection."""

    def __init__(self, visual):
        self.visual = visual

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual.trunk.forward_features(x)

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        trunk_out = self.visual.trunk.forward_head(pooled[:, :, None, None])  # pooling a 1x1 map is the identity
        return self.visual.head(trunk_out)


class DenseTower:
    """A CLIP image tower split into a dense feature map (``features``) and a per-vector ``head``."""

    def __init__(self, visual: torch.nn.Module, name: str = "this CLIP"):
        from open_clip.modified_resnet import ModifiedResNet
        from open_clip.timm_model import TimmModel

        if isinstance(visual, ModifiedResNet):
            self.parts = _ResNetTower(visual)
        elif isinstance(visual, TimmModel):
            if "pool" in dict(visual.head.named_children()):
                raise NotDense(f"mask_pool: {name}'s timm tower pools with attention in open_clip's head; mask "
                               f"pooling needs a tower that averages a feature map (e.g. convnext_base)")
            self.parts = _TimmTower(visual)
        else:
            raise NotDense(f"mask_pool needs a convolutional CLIP image tower (open_clip's ModifiedResNet such as "
                           f"RN50, or a timm ConvNeXt such as convnext_base); {name} has a {type(visual).__name__}")
        self.visual = visual
        self.stride = self._probe(name, isinstance(visual, TimmModel))

    @torch.no_grad()
    def _probe(self, name: str, exact_head: bool) -> int:
        """The tower's stride, from a random image; for a timm tower also checks that the trunk's
        global pooling is an average (mask pooling replaces it)."""
        param = next(self.visual.parameters())
        x = torch.randn(1, 3, PROBE_SIDE, PROBE_SIDE, generator=torch.Generator().manual_seed(0))
        x = x.to(param.device, param.dtype)
        try:
            fmap = self.parts.features(x)
        except Exception as err:
            raise NotDense(f"mask_pool: {name}'s image tower does not run on a {PROBE_SIDE} px image "
                           f"({type(err).__name__}: {err})") from err
        if fmap.dim() != 4 or fmap.shape[-1] != fmap.shape[-2] or PROBE_SIDE % fmap.shape[-1]:
            raise NotDense(f"mask_pool: {name}'s image tower gives {tuple(fmap.shape)} features for a "
                           f"{PROBE_SIDE} px image, not a feature map [1, C, h, w]")
        if exact_head:
            whole = self.visual(x).float()
            pooled = self.head(fmap.float().mean(dim=(2, 3)))
            if not torch.allclose(whole, pooled, rtol=1e-3, atol=1e-4 * float(whole.abs().max())):
                raise NotDense(f"mask_pool: {name}'s timm trunk does not average its feature map before its "
                               f"head, so a mask average cannot take the pooling's place")
        return PROBE_SIDE // fmap.shape[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``x [1, 3, H, W]`` (normalised, sides multiples of ``stride``) -> ``[1, C, H/stride, W/stride]``."""
        return self.parts.features(x)

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[K, C]`` -> image embeddings ``[K, D]`` (not normalised)."""
        return self.parts.head(pooled)


class MaskPoolClassifier:
    """``probs(image, masks)`` as ``ClipClassifier``'s, by mask pooling CLIP's dense features.

    ``clip``: a loaded ``ClipClassifier`` whose categories are set; its model, normalisation and
    text embeddings are shared, not copied.
    """

    def __init__(self, clip, name: str = "this CLIP"):
        self.clip = clip
        self.tower = DenseTower(clip.model.visual, name)

    @property
    def text_embeddings(self) -> torch.Tensor | None:
        return self.clip.text_embeddings

    @property
    def categories(self) -> list[str] | None:
        return self.clip.categories

    @torch.no_grad()
    def embed(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings ``[K, D]`` of ``masks [K, h, w]`` (bool, covering the canvas of
        ``image [3, H, W]`` in [0, 1]); an empty mask gives a zero row."""
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"mask_pool: image must be [3, H, W], got {tuple(image.shape)}")
        if masks.dim() != 3 or masks.dtype != torch.bool:
            raise ValueError(f"mask_pool: masks must be bool [K, H, W], got {masks.dtype} {tuple(masks.shape)}")
        clip, stride = self.clip, self.tower.stride
        height, width = image.shape[-2:]
        x = (image.to(clip.device, torch.float32) - clip.mean) / clip.std
        # padding is CLIP's mean colour (0 after normalisation); the grid then tiles the image exactly
        x = F.pad(x, (0, -width % stride, 0, -height % stride))
        dtype = next(clip.model.parameters()).dtype
        fmap = self.tower.features(x[None].to(dtype))[0].float()
        masks = masks.to(clip.device)
        if tuple(masks.shape[-2:]) != (height, width):  # lower-resolution masks of the same canvas
            masks = F.interpolate(masks[:, None].float(), size=(height, width), mode="bilinear")[:, 0] > 0.5
        pooled = mask_pool(fmap, masks, stride)
        embeddings = F.normalize(self.tower.head(pooled.to(dtype)).float(), dim=-1)
        return embeddings * masks.flatten(1).any(1, keepdim=True)

    @torch.no_grad()
    def probs(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Eq. 7 on mask-pooled embeddings -> ``[K, N]`` on the image's device (uniform for an empty mask)."""
        if self.text_embeddings is None:
            raise RuntimeError("MaskPoolClassifier.probs: call set_categories(names) on its ClipClassifier first")
        if masks.shape[0] == 0:
            return torch.zeros(0, len(self.text_embeddings), device=image.device)
        logits = self.clip.model.logit_scale.exp().float() * self.embed(image, masks) @ self.text_embeddings.T
        return logits.softmax(dim=-1).to(image.device)
