"""What the training loop reads: the dataset, its semi-supervised split and the torch datasets."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pldc_core.config import ExperimentConfig

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from pldc_core.data.coco import CocoIndex
    from pldc_core.data.loader import UnlabeledDataset
    from pldc_core.structures import Categories

log = logging.getLogger(__name__)


@dataclass
class DataBundle:
    """Everything the loop reads: datasets, their ids, and the categories."""

    categories: Categories
    train_index: CocoIndex
    val_index: CocoIndex
    labeled_ids: list[int]
    unlabeled_ids: list[int]
    labeled: Dataset          # LabeledDataset, or a ConcatDataset with the curated extra images
    unlabeled: UnlabeledDataset
    val_json: Path


def split_command(d, split_file: Path) -> str:
    """The ``pldc data split`` command line that writes the split a config's ``data`` section asks for."""
    import shlex

    words = ["pldc", "data", "split", "--dataset", d.dataset, "--data-root", str(d.data_root)]
    if d.registry_file:
        words += ["--registry", str(d.registry_file)]
    words += ["--percent", f"{d.percent:g}", "--seeds", str(d.split_seed), "--out", str(split_file)]
    return shlex.join(words)


def build_data(cfg: ExperimentConfig) -> DataBundle:
    """Load the dataset, its split and the train/eval datasets named by the config."""
    from pldc_core.data.augment import StrongPhotometric, TrainAugment
    from pldc_core.data.coco import load_coco
    from pldc_core.data.loader import LabeledDataset, UnlabeledDataset
    from pldc_core.data.registry import get_dataset, split_file_of
    from pldc_core.data.splits import load_split

    d = cfg.data
    spec = get_dataset(d.dataset, data_root=d.data_root, registry_file=d.registry_file)
    # COCO train2017 holds a few annotations with no area; training skips them with one warning
    train_index = spec.load_train(skip_degenerate=True)
    val_index = spec.load_val(skip_degenerate=True)
    split_file = split_file_of(d)
    if not split_file.is_file():
        raise FileNotFoundError(f"{split_file}: split file not found; make it with `{split_command(d, split_file)}` "
                                "or set data.split_file")
    labeled_ids, unlabeled_ids = load_split(split_file, d.percent, d.split_seed)
    augment = TrainAugment(d.image_size, scale_range=tuple(d.scale_range))
    strong = StrongPhotometric(cutout=d.cutout, blur_sigma=tuple(d.blur_sigma))
    # the strong view of labeled images is drawn only when the student gets it, so that runs
    # without it keep their random streams
    labeled_strong = strong if cfg.train.labeled_strong_view else None
    labeled = LabeledDataset(train_index, labeled_ids, augment, labeled_strong)
    if d.extra_labeled_json:
        from torch.utils.data import ConcatDataset

        extra_index = load_coco(d.extra_labeled_json, spec.image_root_train, skip_degenerate=True)
        if extra_index.categories != train_index.categories:
            raise ValueError(f"{d.extra_labeled_json}: its categories differ from {spec.train_json}'s")
        extra_ids = [i for i in extra_index.image_ids if extra_index.annotations(i)]
        labeled = ConcatDataset([labeled, LabeledDataset(extra_index, extra_ids, augment, labeled_strong)])
        taken = set(extra_ids)
        unlabeled_ids = [i for i in unlabeled_ids if i not in taken]
        log.info("added %d curated images from %s as labeled data", len(extra_ids), d.extra_labeled_json)
    pool = train_index.images_only(unlabeled_ids)
    if d.extra_unlabeled:
        # the paper's 100% setting: every train image labeled, plus an extra unlabeled set (COCO unlabeled2017)
        from pldc_core.data.coco import ImageList

        extra = get_dataset(d.extra_unlabeled, data_root=d.data_root, registry_file=d.registry_file)
        pool = pool.joined(ImageList.from_json(extra.train_json, extra.image_root_train))
        log.info("added %d unlabeled images of %s", len(pool) - len(unlabeled_ids), d.extra_unlabeled)
    unlabeled = UnlabeledDataset(pool, pool.image_ids, augment, strong)
    return DataBundle(train_index.categories, train_index, val_index, list(labeled_ids), list(unlabeled_ids),
                      labeled, unlabeled, Path(spec.val_json))
