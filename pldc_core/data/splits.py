"""Semi-supervised splits: p% of the training images labeled, the rest unlabeled, per seed.

Convention: p% of the train images, sampled at random at the image level, the rest unlabeled.
This protocol for COCO (1/2/5/10%, several random draws) comes from STAC (Sohn et al., 2020, "A
Simple Semi-Supervised Learning Framework for Object Detection"); Unbiased Teacher, PAIS and
GuidedDistillation follow it, and the paper follows GuidedDistillation for Cityscapes. Our draws
are made here (below), so they are not those projects' published image lists. ``int(p / 100 * N)``
images (at least 1) for each (percent, seed), drawn independently for every percent. The paper's
"100%" setting (every train image labeled, COCO unlabeled2017 as unlabeled data) is percent 100
with ``data.extra_unlabeled: coco2017-unlabeled``. Images without annotations are sampled like any
other. Instead of a NumPy RNG stream, whose algorithm may change between NumPy versions, an
image's rank for (percent, seed) is the SHA-256 of ``"percent:seed:image_id"``: the split depends
only on the ids, the percent and the seed, not on library versions or the order of the ids.

File format::

    {"dataset": NAME, "num_images": N,
     "splits": {"5": {"0": {"labeled": [ids...], "unlabeled": [ids...]}, ...}, ...}}
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import Iterable

from pldc_core import atomic
from pldc_core.data.coco import DatasetError, read_json_file


def percent_key(percent: float) -> str:
    """The JSON key of a percent: ``5 -> "5"``, ``0.5 -> "0.5"``."""
    p = float(percent)
    if not 0 < p <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}")
    return f"{p:g}"


def num_labeled(percent: float, num_images: int) -> int:
    """``int(percent / 100 * num_images)``, at least 1 (Unbiased Teacher's count)."""
    percent_key(percent)
    return max(1, int(float(percent) / 100.0 * num_images))


def _rank(key: str, seed: int, image_id: int) -> bytes:
    return hashlib.sha256(f"{key}:{seed}:{image_id}".encode()).digest()


def make_splits(image_ids: Iterable[int], percents: Iterable[float] = (1, 2, 5, 10),
                seeds: Iterable[int] = (0, 1, 2)) -> dict:
    """``{"num_images": N, "splits": {percent_key: {str(seed): {"labeled", "unlabeled"}}}}``,
    id lists sorted ascending; labeled and unlabeled are disjoint and cover ``image_ids``."""
    ids = [int(i) for i in image_ids]
    if not ids:
        raise ValueError("cannot split an empty list of images")
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    if duplicates:
        raise ValueError(f"image id {duplicates[0]} appears more than once")
    splits: dict[str, dict[str, dict[str, list[int]]]] = {}
    for percent in percents:
        key = percent_key(percent)
        k = num_labeled(percent, len(ids))
        splits[key] = {}
        for seed in seeds:
            ranked = sorted(ids, key=lambda i: _rank(key, int(seed), i))
            labeled = sorted(ranked[:k])
            unlabeled = sorted(ranked[k:])
            splits[key][str(int(seed))] = {"labeled": labeled, "unlabeled": unlabeled}
    return {"num_images": len(ids), "splits": splits}


def write_splits(path: str | os.PathLike, image_ids: Iterable[int], percents: Iterable[float] = (1, 2, 5, 10),
                 seeds: Iterable[int] = (0, 1, 2), dataset: str | None = None) -> dict:
    """Make the splits and write them (atomically) as JSON to ``path``; returns what was written."""
    content = {"dataset": dataset, **make_splits(image_ids, percents, seeds)}
    atomic.write_json(path, content, indent=None)
    return content


def read_splits(path: str | os.PathLike) -> dict:
    """Read and check a split file (format in the module docstring)."""
    path = Path(path)
    data = read_json_file(path, "split file not found (make one with `pldc data split`)")
    if not isinstance(data, dict) or not isinstance(data.get("splits"), dict) or "num_images" not in data:
        raise DatasetError(f"{path}: not a split file (needs 'num_images' and 'splits')")
    return data


def load_split(path: str | os.PathLike, percent: float, seed: int) -> tuple[list[int], list[int]]:
    """``(labeled_ids, unlabeled_ids)`` of one (percent, seed) of a split file."""
    data = read_splits(path)
    key = percent_key(percent)
    by_seed = data["splits"].get(key)
    if by_seed is None:
        have = ", ".join(sorted(data["splits"], key=float)) or "none"
        raise DatasetError(f"{path}: no split for percent {key} (available: {have})")
    entry = by_seed.get(str(int(seed)))
    if entry is None:
        have = ", ".join(sorted(by_seed, key=int)) or "none"
        raise DatasetError(f"{path}: percent {key} has no seed {seed} (available: {have})")
    try:
        labeled, unlabeled = [int(i) for i in entry["labeled"]], [int(i) for i in entry["unlabeled"]]
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"{path}: percent {key} seed {seed}: needs integer lists 'labeled' and "
                           "'unlabeled'") from None
    overlap = set(labeled) & set(unlabeled)
    if overlap:
        raise DatasetError(f"{path}: percent {key} seed {seed}: image id {min(overlap)} is both labeled "
                           "and unlabeled")
    if len(labeled) + len(unlabeled) != data["num_images"]:
        raise DatasetError(f"{path}: percent {key} seed {seed}: {len(labeled)} + {len(unlabeled)} ids, "
                           f"but num_images is {data['num_images']}")
    return labeled, unlabeled
