"""Running a model on whole images (evaluation, pseudo-label records): resize, pad, forward, un-pad."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from tqdm import tqdm

from pldc_core import distributed as dist_utils
from pldc_core.data.augment import TestResize, unpad_and_resize
from pldc_core.structures import COCO_REFERENCE_AREA


@dataclass
class ImagePrediction:
    """Raw query outputs for one image resized by ``TestResize`` and padded to ``padded_size``
    (a side, or ``(H, W)``)."""

    class_logits: torch.Tensor  # [Q, N+1]
    mask_logits: torch.Tensor  # [Q, h, w] over the padded input
    resized_hw: tuple[int, int]
    padded_size: int | tuple[int, int]

    def at_size(self, hw: tuple[int, int]) -> torch.Tensor:
        """Mask logits ``[Q, *hw]`` over the real image (padding dropped)."""
        return unpad_and_resize(self.mask_logits, self.resized_hw, self.padded_size, hw)

    def low_res(self) -> torch.Tensor:
        """Mask logits at the model's resolution, cropped to the part that covers the real image."""
        h, w = covered_hw(self.resized_hw, self.padded_size, tuple(self.mask_logits.shape[-2:]))
        return self.mask_logits[:, :h, :w]


def covered_hw(resized_hw: tuple[int, int], padded_size: int | tuple[int, int],
               low_hw: tuple[int, int]) -> tuple[int, int]:
    """The top-left part of a ``low_hw`` map over a padded input that covers any of the real
    ``resized_hw`` image (what inference keeps of the mask logits)."""
    pad_h, pad_w = (padded_size,) * 2 if isinstance(padded_size, int) else padded_size
    return (max(1, math.ceil(resized_hw[0] * low_hw[0] / pad_h)),
            max(1, math.ceil(resized_hw[1] * low_hw[1] / pad_w)))


@torch.no_grad()
def predict_images(model: torch.nn.Module, images: list[torch.Tensor], image_size: int,
                   device: torch.device, test_size="train") -> list[ImagePrediction]:
    """Forward a list of ``[3, H, W]`` images (any sizes) through ``model`` in eval mode, resized
    as ``test_size`` says (``data.augment.TestResize``)."""
    batch, sizes, padded = TestResize(test_size, image_size)(images)
    padded = padded[0] if test_size == "train" else padded
    was_training = model.training
    model.eval()
    out = model(batch.to(device))
    model.train(was_training)
    return [ImagePrediction(out.class_logits[i].float().cpu(), out.mask_logits[i].float().cpu(), sizes[i],
                            padded) for i in range(len(images))]


def area_scale_of(index, image_ids) -> float:
    """Mean image area relative to COCO's, used to scale the small/medium/large limits."""
    areas = [index.image_info(i)["height"] * index.image_info(i)["width"] for i in image_ids]
    return float(sum(areas) / max(1, len(areas)) / COCO_REFERENCE_AREA)


def predict_each(model: torch.nn.Module, images, image_ids: list[int], image_size: int, device: torch.device,
                 *, batch_size: int = 8, desc: str = "predict", test_size="train"):
    """``(image_id, (H, W), ImagePrediction)`` for each of ``image_ids``, read from ``images`` (a
    ``CocoIndex`` or ``ImageList``) and run through ``model`` a batch at a time, resized as
    ``test_size`` says (``predict_images``), with a progress bar."""
    bar = tqdm(total=len(image_ids), desc=desc, leave=False, disable=os.environ.get("PLDC_NO_PROGRESS") == "1"
               or not dist_utils.is_main())
    try:
        for start in range(0, len(image_ids), batch_size):
            ids = list(image_ids[start:start + batch_size])
            batch = [images.load_image(i) for i in ids]
            preds = predict_images(model, batch, image_size, device, test_size)
            for image_id, image, pred in zip(ids, batch, preds):
                yield image_id, tuple(image.shape[-2:]), pred
            bar.update(len(ids))
    finally:
        bar.close()


def evaluate_model(model: torch.nn.Module, index, image_ids: list[int], image_size: int, device: torch.device,
                   *, top_k: int = 100, batch_size: int = 8, size_buckets: str = "rescaled", test_size="train",
                   predictions_out: str | os.PathLike | None = None, per_class: bool = False) -> dict:
    """COCO mask AP of ``model`` on ``image_ids`` of ``index`` (sharded over ranks; metrics on rank 0).

    ``size_buckets``: ``absolute`` uses COCO's area limits, ``rescaled`` scales them by the mean
    image area (``area_scale_of``). ``test_size``: see ``TestResize``. ``predictions_out``: also
    write the COCO results JSON (rank 0). ``per_class``: also ``"AP_per_class"`` (``coco_mask_ap``).
    """
    from pldc_core.evaluation import CocoEvaluator

    if size_buckets not in ("absolute", "rescaled"):
        raise ValueError(f"size_buckets must be 'absolute' or 'rescaled', got {size_buckets!r}")
    scale = area_scale_of(index, image_ids) if size_buckets == "rescaled" else None
    evaluator = CocoEvaluator(index.json_path, index.categories, top_k=top_k, area_scale=scale)
    mine = list(image_ids)[dist_utils.rank()::dist_utils.world_size()]
    for image_id, hw, pred in predict_each(model, index, mine, image_size, device, batch_size=batch_size,
                                           desc="eval", test_size=test_size):
        evaluator.add(image_id, pred.class_logits, pred.at_size(hw))
    return evaluator.compute(predictions_out=predictions_out, per_class=per_class)
