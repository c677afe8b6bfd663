"""Weak and strong training views with one shared geometry, and the evaluation resize.

The teacher sees the weak view (paper Table III): horizontal flip, large-scale jitter, a
fixed-size crop/pad. The student sees the strong view, which is the weak view's *output* put
through photometric noise only, so the teacher's pseudo-labels line up with the student's
input pixel for pixel. Every random choice comes from torch's global RNG (the loader forks and
seeds it per item), so a fixed seed gives a fixed view.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as torch_f
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._utils import query_size

# sigma is in pixels, so the blur kernel follows sigma's upper bound (2.0), not the image
# size: SimCLR's "10% of the side" rule would give ~100 taps at 1024 px and an over-wide blur
# on the demo's 128 px images. 9 taps span +-2 sigma at sigma = 2 and > +-4 sigma for
# sigma <= 1 (the kernel is renormalised), and its reflect padding of 4 works on any image
# of 5 px or more.
BLUR_KERNEL_SIZE = 9

# The three cutout patterns' aspect ratios and fill (data.cutout). "paper": Table III, black
# patches. "authors": the authors' public code, whose second and third ranges reach 6 and 8
# (Table III prints 0.6 and 0.8) and whose patches are filled with random values.
CUTOUTS = {
    "paper": (((0.3, 3.3), (0.1, 0.6), (0.05, 0.8)), 0),
    "authors": (((0.3, 3.3), (0.1, 6.0), (0.05, 8.0)), "random"),
}


@dataclass
class AugmentedView:
    """One training view: ``image [3,S,S]``, ``masks [K',S,S]`` bool, ``keep [K']`` (which input
    instances survived, in input order), ``valid [S,S]`` (True on image pixels, False on padding)."""

    image: torch.Tensor
    masks: torch.Tensor
    keep: torch.Tensor
    valid: torch.Tensor


class _ScaleJitter(v2.ScaleJitter):
    """torchvision's large-scale jitter, with two changes: a side is never resized to 0 px (very
    thin images at 0.1x), and masks use nearest-exact rather than torch's legacy "nearest".
    Both are nearest-neighbour; legacy nearest samples source pixel ``floor(i / f)`` instead of
    the one under the output pixel's centre, which shifts masks by up to half an output pixel
    against the (centre-aligned) bilinear image at strong downscales."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = super().make_params(flat_inputs)["size"]
        return dict(size=(max(height, 1), max(width, 1)))

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            return F.resize(inpt, params["size"], interpolation=v2.InterpolationMode.NEAREST_EXACT)
        return super().transform(inpt, params)


class _FixedSizeCropPad(v2.Transform):
    """A random ``size x size`` crop; a side shorter than ``size`` is zero-padded at the
    bottom/right (detectron2's FixedSizeCrop, which the paper uses; torchvision's RandomCrop
    would pad on both sides)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = query_size(flat_inputs)
        top = int(torch.randint(0, max(height - self.size, 0) + 1, ()))
        left = int(torch.randint(0, max(width - self.size, 0) + 1, ()))
        return dict(top=top, left=left)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        # F.crop fills whatever lies outside the input with 0.
        return self._call_kernel(F.crop, inpt, top=params["top"], left=params["left"],
                                 height=self.size, width=self.size)


def _check_image(image: torch.Tensor) -> None:
    if not (isinstance(image, torch.Tensor) and image.ndim == 3 and image.shape[0] == 3
            and image.is_floating_point()):
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a float tensor [3, H, W] in [0, 1]; got {got}"
                         + (f" {image.dtype}" if isinstance(image, torch.Tensor) else ""))


class TrainAugment:
    """The weak view: flip (p=``flip_p``), scale jitter so the image fits in a square of side
    ``image_size * U(scale_range)`` (aspect kept), then a random ``image_size`` crop / pad.

    ``aug(image [3,H,W] float, masks [K,H,W] bool) -> AugmentedView``. Masks are resized with
    nearest interpolation; instances with no pixel left are dropped (``keep`` lists the rest).
    """

    def __init__(self, image_size: int, scale_range: tuple[float, float] = (0.1, 2.0), flip_p: float = 0.5):
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        self.image_size = int(image_size)
        self.geometry = v2.Compose([
            v2.RandomHorizontalFlip(p=flip_p),
            _ScaleJitter((self.image_size, self.image_size), scale_range=tuple(scale_range)),
            _FixedSizeCropPad(self.image_size),
        ])

    def __call__(self, image: torch.Tensor, masks: torch.Tensor) -> AugmentedView:
        _check_image(image)
        if masks.dtype != torch.bool or masks.ndim != 3 or masks.shape[-2:] != image.shape[-2:]:
            raise ValueError(f"masks must be bool [K, {image.shape[1]}, {image.shape[2]}] to match the "
                             f"image; got {tuple(masks.shape)} {masks.dtype}")
        # Channel 0 is an all-ones "real pixel" plane: it rides through the same flip, resize
        # and crop as the instances, and the crop's zero padding turns it into the valid mask.
        # uint8 because torch cannot resize bool tensors.
        real = torch.ones((1, *masks.shape[1:]), dtype=torch.bool, device=masks.device)
        planes = torch.cat([real, masks]).to(torch.uint8)
        out_image, out_planes = self.geometry(tv_tensors.Image(image), tv_tensors.Mask(planes))
        out_planes = out_planes.as_subclass(torch.Tensor).bool()
        valid, out_masks = out_planes[0], out_planes[1:]
        keep = torch.nonzero(out_masks.flatten(1).any(dim=1)).flatten()
        return AugmentedView(image=out_image.as_subclass(torch.Tensor).contiguous(),
                             masks=out_masks[keep].contiguous(), keep=keep, valid=valid.contiguous())


class StrongPhotometric:
    """The strong view's extra noise, applied to a weak view's image: colour jitter, grayscale,
    gaussian blur and three cutout patterns (paper Table III). Nothing here moves a pixel, so
    the strong view keeps the weak view's geometry.

    ``strong(image [3,S,S]) -> image [3,S,S]``; the input is not modified. The keyword
    arguments default to the paper's probabilities and blur (``blur_sigma``, pixels); tests turn
    single ops off with them. If ``valid`` is given, padding pixels are set back to 0 so both
    views agree outside the image (contrast jitter would otherwise shift them).
    """

    def __init__(self, *, color_jitter_p: float = 0.8, grayscale_p: float = 0.2, blur_p: float = 0.5,
                 cutout_p: tuple[float, float, float] = (0.7, 0.5, 0.3), cutout: str = "paper",
                 blur_sigma: tuple[float, float] = (0.1, 2.0)):
        if cutout not in CUTOUTS:
            raise ValueError(f"cutout must be one of {', '.join(CUTOUTS)}; got {cutout!r}")
        ratios, fill = CUTOUTS[cutout]
        self.transform = v2.Compose([
            v2.RandomApply([v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)],
                           p=color_jitter_p),
            v2.RandomGrayscale(p=grayscale_p),
            v2.RandomApply([v2.GaussianBlur(kernel_size=BLUR_KERNEL_SIZE, sigma=tuple(blur_sigma))], p=blur_p),
            v2.RandomErasing(p=cutout_p[0], scale=(0.05, 0.2), ratio=ratios[0], value=fill),
            v2.RandomErasing(p=cutout_p[1], scale=(0.02, 0.2), ratio=ratios[1], value=fill),
            v2.RandomErasing(p=cutout_p[2], scale=(0.02, 0.2), ratio=ratios[2], value=fill),
        ])

    def __call__(self, image: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        _check_image(image)
        out = self.transform(tv_tensors.Image(image)).as_subclass(torch.Tensor)
        if valid is not None:
            out = out * valid.to(out.dtype)
        return out


class EvalResize:
    """Resize so the longer side is ``image_size`` (aspect kept), then zero-pad bottom/right to
    ``image_size x image_size``. ``resize(image) -> (image [3,S,S], (h, w))``, ``(h, w)`` being
    the resized size before padding (what ``unpad_and_resize`` needs)."""

    def __init__(self, image_size: int):
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        self.image_size = int(image_size)

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        _check_image(image)
        height, width = image.shape[-2:]
        ratio = self.image_size / max(height, width)
        resized_hw = (max(1, round(height * ratio)), max(1, round(width * ratio)))
        resized = F.resize(image, list(resized_hw), interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
        padded = torch_f.pad(resized, (0, self.image_size - resized_hw[1], 0, self.image_size - resized_hw[0]))
        return padded, resized_hw


class TestResize:
    """The test-time resize of a protocol (``data.test_size``): ``"train"`` is ``EvalResize``
    (long side = ``image_size``, square padding); ``"full"`` keeps the image's resolution;
    ``[short, max_long]`` resizes so the short side is ``short`` unless the long side would pass
    ``max_long`` (Detectron2's ResizeShortestEdge; COCO: 800 / 1333). ``resize(images)`` pads a
    list to one size (a multiple of 32 outside "train") and returns ``(batch [B,3,H,W],
    resized sizes, (H, W))``."""

    __test__ = False  # not a pytest test class

    def __init__(self, test_size, image_size: int):
        self.test_size, self.image_size = test_size, int(image_size)

    def resized_hw(self, height: int, width: int) -> tuple[int, int]:
        if self.test_size == "full":
            return height, width
        short, max_long = self.test_size
        scale = short / min(height, width)
        if max(height, width) * scale > max_long:
            scale = max_long / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def __call__(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]], tuple[int, int]]:
        if self.test_size == "train":
            resize = EvalResize(self.image_size)
            out = [resize(img) for img in images]
            return torch.stack([o[0] for o in out]), [o[1] for o in out], (self.image_size, self.image_size)
        sizes = [self.resized_hw(*img.shape[-2:]) for img in images]
        padded_hw = tuple(-(-max(s[k] for s in sizes) // 32) * 32 for k in (0, 1))
        batch = images[0].new_zeros((len(images), 3, *padded_hw))
        for i, (img, (h, w)) in enumerate(zip(images, sizes)):
            _check_image(img)
            if (h, w) != tuple(img.shape[-2:]):
                img = F.resize(img, [h, w], interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
            batch[i, :, :h, :w] = img
        return batch, sizes, padded_hw


def unpad_and_resize(mask_logits: torch.Tensor, resized_hw: tuple[int, int], padded_size: int | tuple[int, int],
                     orig_hw: tuple[int, int]) -> torch.Tensor:
    """Map mask logits ``[Q,s,s]`` or ``[B,Q,s,s]`` predicted on an ``EvalResize``-d input back to
    the original image: ``[..., Q, *orig_hw]``. ``padded_size``: the padded input's side, or its
    ``(height, width)`` when it is not square (``TestResize``).

    Keeps the part of the ``s x s`` logits that covers the real ``resized_hw`` image (its top-left
    ``resized_hw * s / padded_size``, a fractional size in general) and resizes it bilinearly to
    ``orig_hw``. Done as one bilinear sampling at the output pixel centres (``align_corners=False``
    convention), which equals ``F.interpolate(bilinear)`` when the crop is the whole map, and
    never builds a full-resolution ``[Q, padded_size, padded_size]`` intermediate.
    """
    if mask_logits.ndim not in (3, 4):
        raise ValueError(f"mask_logits must be [Q, s, s] or [B, Q, s, s]; got {tuple(mask_logits.shape)}")
    batched = mask_logits.ndim == 4
    logits = mask_logits if batched else mask_logits.unsqueeze(0)
    num_images, num_queries, low_h, low_w = logits.shape
    out_h, out_w = int(orig_hw[0]), int(orig_hw[1])
    if logits.numel() == 0:
        out = logits.new_zeros((num_images, num_queries, out_h, out_w))
        return out if batched else out[0]
    dtype = logits.dtype if logits.is_floating_point() else torch.float32
    logits = logits.to(dtype)

    padded_h, padded_w = (padded_size, padded_size) if isinstance(padded_size, int) else padded_size

    def normalised_centres(out_len: int, resized_len: int, low_len: int, padded_len: int) -> torch.Tensor:
        # centre of output pixel i in low-res pixel units, then in grid_sample's [-1, 1] range
        centres = (torch.arange(out_len, device=logits.device, dtype=dtype) + 0.5) \
            * (resized_len / out_len) * (low_len / padded_len)
        return 2 * centres / low_len - 1

    gy = normalised_centres(out_h, resized_hw[0], low_h, padded_h)
    gx = normalised_centres(out_w, resized_hw[1], low_w, padded_w)
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)  # [out_h, out_w, (x, y)]
    out = torch_f.grid_sample(logits, grid.expand(num_images, -1, -1, -1), mode="bilinear",
                              padding_mode="border", align_corners=False)
    return out if batched else out[0]
