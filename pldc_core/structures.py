"""Data types shared by the engine: categories, one dataset sample, a collated batch.

Conventions (kept everywhere in the project):
- images are float32 tensors ``[3, H, W]`` with values in ``[0, 1]``;
- instance masks are bool tensors ``[K, H, W]`` aligned pixel for pixel with the image;
- ``labels`` are *contiguous* class indices ``0..N-1`` (``Categories.index_of`` maps a COCO
  category id to its index); COCO ids appear only at the file boundary (JSON in, JSON out).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the analysis side imports this module without torch's start-up cost
    import torch


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    supercategory: str


@dataclass(frozen=True)
class Categories:
    """The ordered category list of a dataset; index ``i`` is the model's class ``i``."""

    items: tuple[Category, ...]

    @classmethod
    def from_coco(cls, coco_categories: list[dict]) -> "Categories":
        cats = sorted(coco_categories, key=lambda c: c["id"])
        return cls(tuple(Category(int(c["id"]), str(c["name"]), str(c.get("supercategory", c["name"])))
                         for c in cats))

    def __len__(self) -> int:
        return len(self.items)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.items]

    @property
    def ids(self) -> list[int]:
        return [c.id for c in self.items]

    def index_of(self, category_id: int) -> int:
        try:
            return self._id_to_index[category_id]
        except KeyError:
            raise KeyError(f"unknown category id {category_id}") from None

    @property
    def _id_to_index(self) -> dict[int, int]:
        return {c.id: i for i, c in enumerate(self.items)}

    def supercategory_of_index(self) -> dict[int, str]:
        return {i: c.supercategory for i, c in enumerate(self.items)}

    def to_coco(self) -> list[dict]:
        return [{"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in self.items]


@dataclass
class InstanceSample:
    """One image with its instances (``masks``/``labels`` are empty for unlabeled images)."""

    image: torch.Tensor  # [3, H, W] float in [0, 1]
    masks: torch.Tensor  # [K, H, W] bool
    labels: torch.Tensor  # [K] int64, contiguous class indices
    image_id: int
    meta: dict = field(default_factory=dict)  # e.g. original size, file name, valid-pixel mask

    def __post_init__(self) -> None:
        if self.masks.shape[0] != self.labels.shape[0]:
            raise ValueError(f"image {self.image_id}: {self.masks.shape[0]} masks but {self.labels.shape[0]} labels")
        if self.masks.numel() and self.masks.shape[-2:] != self.image.shape[-2:]:
            raise ValueError(f"image {self.image_id}: mask size {tuple(self.masks.shape[-2:])} "
                             f"!= image size {tuple(self.image.shape[-2:])}")


# COCO's small/medium/large limits (32^2 and 96^2 pixels) refer to images of about 640 x 480.
COCO_REFERENCE_AREA = 640 * 480


def size_category(area: float, image_height: int, image_width: int) -> str:
    """'small' / 'medium' / 'large' with COCO's area limits scaled to this image's size."""
    scale = (image_height * image_width) / COCO_REFERENCE_AREA
    if area < 32 ** 2 * scale:
        return "small"
    if area < 96 ** 2 * scale:
        return "medium"
    return "large"
