"""Torch datasets for training, and a deterministic, resumable batch stream.

- ``LabeledDataset``: image + instance masks through the weak augmentation.
- ``UnlabeledDataset``: built from an ``ImageList``, which holds no annotations, so the
  unlabeled stream cannot read them; yields the weak view (for the teacher) and the strong
  view of the same geometry (for the student).
- ``infinite_batches``: batch ``t`` depends only on ``(seed, t)`` - which images, and every
  random choice of their augmentation - so a run resumed at iteration ``t`` sees exactly the
  batches an uninterrupted run would, with any number of loader workers.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from pldc_core.data.coco import CocoIndex, DatasetError, ImageList
from pldc_core.structures import InstanceSample


def _check_ids(source, image_ids: Sequence[int]) -> list[int]:
    ids = [int(i) for i in image_ids]
    known = set(source.image_ids)
    missing = [i for i in ids if i not in known]
    if missing:
        where = getattr(source, "json_path", source.image_root)
        raise DatasetError(f"{where}: image id {missing[0]} is not in the dataset "
                           f"({len(missing)} of {len(ids)} requested ids are missing)")
    return ids


class LabeledDataset(Dataset):
    """Item ``i``: ``InstanceSample`` of ``image_ids[i]`` after ``augment`` (a ``TrainAugment``;
    None keeps the original image). ``meta``: ``file_name``, ``orig_size`` (H, W), ``valid``
    (bool [S, S], False on padding) and ``ann_ids`` (int64 [K], the kept instances' ids); with
    ``strong`` (a ``StrongPhotometric``) also ``strong_image``, the strong view of the same
    geometry, whose masks are the sample's masks."""

    def __init__(self, index: CocoIndex, image_ids: Sequence[int], augment: Callable | None = None,
                 strong: Callable | None = None):
        self.index = index
        self.image_ids = _check_ids(index, image_ids)
        self.augment = augment
        self.strong = strong

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> InstanceSample:
        image_id = self.image_ids[i]
        image = self.index.load_image(image_id)
        masks, labels, ann_ids = self.index.instances(image_id)
        meta = {"file_name": self.index.image_info(image_id)["file_name"], "orig_size": tuple(image.shape[-2:])}
        if self.augment is None:
            valid = torch.ones(image.shape[-2:], dtype=torch.bool)
        else:
            view = self.augment(image, masks)
            image, masks, valid = view.image, view.masks, view.valid
            labels, ann_ids = labels[view.keep], ann_ids[view.keep]
        meta.update(valid=valid, ann_ids=ann_ids)
        if self.strong is not None:
            meta["strong_image"] = self.strong(image, valid)
        return InstanceSample(image=image, masks=masks, labels=labels, image_id=image_id, meta=meta)


@dataclass
class UnlabeledPair:
    """The teacher's weak view (an ``InstanceSample`` with no instances; ``meta['valid']`` marks
    real pixels) and the student's strong view of the same geometry."""

    weak: InstanceSample
    strong_image: torch.Tensor
    image_id: int


class UnlabeledDataset(Dataset):
    """Item ``i``: ``UnlabeledPair`` of ``image_ids[i]``. Takes an ``ImageList`` only (e.g.
    ``CocoIndex.images_only(ids)``), never an annotated index. ``strong`` gets the weak view's
    image; padding is set back to 0 afterwards so both views agree outside the image."""

    def __init__(self, images: ImageList, image_ids: Sequence[int], augment: Callable | None = None,
                 strong: Callable | None = None):
        if not isinstance(images, ImageList):
            raise TypeError(f"UnlabeledDataset takes an ImageList (CocoIndex.images_only(ids)), not "
                            f"{type(images).__name__}: the unlabeled stream must not see annotations")
        self.images = images
        self.image_ids = _check_ids(images, image_ids)
        self.augment = augment
        self.strong = strong

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> UnlabeledPair:
        image_id = self.image_ids[i]
        image = self.images.load_image(image_id)
        meta = {"file_name": self.images.image_info(image_id)["file_name"], "orig_size": tuple(image.shape[-2:])}
        no_masks = torch.zeros((0, *image.shape[-2:]), dtype=torch.bool)
        if self.augment is None:
            valid = torch.ones(image.shape[-2:], dtype=torch.bool)
        else:
            view = self.augment(image, no_masks)
            image, valid = view.image, view.valid
        strong_image = self.strong(image) if self.strong is not None else image.clone()
        strong_image = strong_image * valid.to(strong_image.dtype)
        meta["valid"] = valid
        weak = InstanceSample(image=image, masks=torch.zeros((0, *image.shape[-2:]), dtype=torch.bool),
                              labels=torch.zeros(0, dtype=torch.int64), image_id=image_id, meta=meta)
        return UnlabeledPair(weak=weak, strong_image=strong_image, image_id=image_id)


# ---------------------------------------------------------------------------------------------
# Deterministic infinite stream


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any parts (stable across runs, platforms and library versions)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class _SeededFetch(Dataset):
    """``fetch[(i, seed)]`` = ``dataset[i]`` computed with torch's CPU RNG seeded to ``seed``
    (the caller's RNG state is restored afterwards)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            return self.dataset[index]


class _KeyBatches:
    """Infinite batch sampler: the ``(index, seed)`` keys of this rank's share of each batch."""

    def __init__(self, size: int, batch_size: int, seed: int, start_iter: int, rank: int, world_size: int):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start_iter, self.rank, self.world_size = start_iter, rank, world_size

    def _permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(derive_seed("epoch", self.seed, epoch))
        return torch.randperm(self.size, generator=generator)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        global_batch = self.batch_size * self.world_size
        epoch, perm = -1, None
        iteration = self.start_iter
        while True:
            keys = []
            for j in range(self.batch_size):
                slot = self.rank * self.batch_size + j
                position = iteration * global_batch + slot
                if position // self.size != epoch:
                    epoch = position // self.size
                    perm = self._permutation(epoch)
                keys.append((int(perm[position % self.size]), derive_seed("item", self.seed, iteration, slot)))
            yield keys
            iteration += 1


def _as_list(items: list) -> list:
    return items


def infinite_batches(dataset: Dataset, batch_size: int, seed: int, start_iter: int = 0, rank: int = 0,
                     world_size: int = 1, num_workers: int = 0) -> Iterator[list]:
    """Yield lists of ``batch_size`` items forever, starting at iteration ``start_iter``.

    Iteration ``t``'s global batch is positions ``[t*B*W, (t+1)*B*W)`` of an endless sequence of
    per-epoch permutations of the dataset (each seeded by ``(seed, epoch)``); rank ``r`` takes its
    ``B`` consecutive slots of it. Each item is fetched with torch's RNG seeded by
    ``(seed, t, slot)``, so augmentations must draw their randomness from torch's global RNG.
    """
    if len(dataset) == 0:
        raise ValueError("cannot draw batches from an empty dataset")
    if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size or start_iter < 0:
        raise ValueError(f"need batch_size >= 1, start_iter >= 0 and 0 <= rank < world_size; got "
                         f"batch_size={batch_size}, start_iter={start_iter}, rank={rank}, world_size={world_size}")
    sampler = _KeyBatches(len(dataset), batch_size, seed, start_iter, rank, world_size)
    fetch = _SeededFetch(dataset)
    if num_workers == 0:
        return ([fetch[key] for key in keys] for keys in sampler)
    return iter(DataLoader(fetch, batch_sampler=sampler, num_workers=num_workers, collate_fn=_as_list))
