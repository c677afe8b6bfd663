"""`pldc clip-crops`: CLIP alone on the ground-truth objects of a checkpoint's records (the paper's Table II).

DICC trusts CLIP more early in training; how far CLIP can be trusted on a dataset is measured by
classifying every GT instance with CLIP only, as DICC would classify a pseudo-mask in each of
its modes (``dicc.DICC_MODES``: box crop, largest-component crop, mask pooling). The table
written here (one row per mode and GT instance) is what ``pldc_core.records.clip_scores`` and
``pldc report`` turn into per-class precision and recall per mode.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from pldc_core.run_dir import CLIP_TABLE_FILE, RunDir

COLUMNS = (("mode", "str"), ("image_id", "int64"), ("gt_id", "int64"), ("gt_class", "int64"),
           ("clip_pred", "int64"), ("clip_prob", "float32"), ("clip_prob_gt", "float32"))


def classify_gt_crops(classifiers: Mapping[str, object], gt: pd.DataFrame, images: pd.DataFrame,
                      image_root: str | Path) -> pd.DataFrame:
    """Each classifier's class for each GT instance of a records' ``gt`` table.

    ``classifiers``: mode name -> a DICC classifier (``probs(image, masks)``) whose categories
    are the records' classes, in index order. ``images`` maps ``image_id`` to ``file_name``
    under ``image_root``; each image is read once for all modes. Returns one row per mode and
    GT, modes in the given order: ``mode, image_id, gt_id, gt_class, clip_pred, clip_prob``
    (CLIP's probability of its class) and ``clip_prob_gt`` (of the true class).
    """
    from pldc_core.data.coco import read_image
    from pldc_core.records.store import decode_mask

    files = dict(zip(images["image_id"].tolist(), images["file_name"].tolist()))
    missing = sorted(set(gt["image_id"].tolist()) - set(files))
    if missing:
        raise ValueError(f"classify_gt_crops: GT of image ids {missing[:5]} that the images table lacks")
    parts = {mode: [] for mode in classifiers}
    groups = gt.groupby("image_id", sort=True)
    for image_id, rows in tqdm(groups, total=groups.ngroups, desc="CLIP on GT crops", leave=False,
                               disable=os.environ.get("PLDC_NO_PROGRESS") == "1"):
        rows = rows.reset_index(drop=True)
        image = read_image(Path(image_root) / files[image_id], int(image_id))
        masks = torch.from_numpy(np.stack([decode_mask(r) for r in rows.to_dict("records")]))
        if tuple(masks.shape[-2:]) != tuple(image.shape[-2:]):
            raise ValueError(f"{Path(image_root) / files[image_id]}: image is {tuple(image.shape[-2:])} but its GT "
                             f"masks are {tuple(masks.shape[-2:])}")
        gt_class = rows["gt_class"].to_numpy(np.int64)
        for mode, clip in classifiers.items():
            probs = clip.probs(image, masks).cpu().numpy()
            parts[mode].append(pd.DataFrame({
                "mode": mode, "image_id": rows["image_id"].to_numpy(np.int64),
                "gt_id": rows["gt_id"].to_numpy(np.int64), "gt_class": gt_class,
                "clip_pred": probs.argmax(axis=1).astype(np.int64), "clip_prob": probs.max(axis=1).astype(np.float32),
                "clip_prob_gt": probs[np.arange(len(rows)), gt_class].astype(np.float32)}))
    frames = [frame for mode in classifiers for frame in parts[mode]]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS})
    return pd.concat(frames, ignore_index=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory (holds records/iter_*/ with ground truth)")
    parser.add_argument("--clip-weights", help="CLIP checkpoint (default: the run's pldc.clip_weights)")
    parser.add_argument("--clip-model", help="open_clip architecture (default: the run's pldc.clip_model)")
    parser.add_argument("--class-descriptions",
                        help="JSON {class name: [descriptions]} (default: the run's pldc.class_descriptions)")
    parser.add_argument("--modes", help="comma-separated DICC modes to compare: box, component, mask_pool "
                                        "(default: all three; mask_pool is left out for a CLIP without a "
                                        "convolutional image tower)")
    parser.add_argument("--iteration", type=int, help="whose records' GT to use (default: the latest)")
    parser.add_argument("--out", help=f"output parquet (default: RUN/{CLIP_TABLE_FILE}, which pldc report reads)")
    parser.add_argument("--device", default="auto")


def _modes(text: str | None) -> list[str]:
    from pldc_core.method.dicc import DICC_MODES

    if text is None:
        return list(DICC_MODES)
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in DICC_MODES]
    if unknown or not modes:
        raise ValueError(f"--modes {text!r}: expected a comma-separated list of {', '.join(DICC_MODES)}")
    return list(dict.fromkeys(modes))


def run(args: argparse.Namespace) -> int:
    from pldc_core.atomic import atomic_path
    from pldc_core.config import ConfigError, PldcConfig, load_config
    from pldc_core.distributed import pick_device
    from pldc_core.method.dicc import CLI_HOW_TO_SUPPLY, DiccWeightsMissing, classifier_for_mode, load_run_clip
    from pldc_core.method.mask_pool import NotDense
    from pldc_core.records.clip_scores import clip_precision_recall_by_mode, mode_summary
    from pldc_core.records.store import RecordError, load_records

    run_dir = Path(args.run)
    try:
        modes = _modes(args.modes)
        config_file = RunDir(run_dir).config
        pldc_cfg = load_config(config_file, saved=True).pldc if config_file.is_file() else PldcConfig()
        if args.clip_model:
            pldc_cfg.clip_model = args.clip_model
        if args.class_descriptions:
            pldc_cfg.class_descriptions = args.class_descriptions
        rec = load_records(run_dir, args.iteration, columns=["image_id"])
        if not rec.info.has_gt:
            raise ValueError(f"{rec.path}: these records have no ground truth (records of images without "
                             f"annotations); CLIP's precision and recall need GT instances")
        names = rec.info.class_names
        clip = load_run_clip(pldc_cfg, names, pick_device(args.device), weights=args.clip_weights, mode="box")
        classifiers = {}
        for mode in modes:
            try:
                classifiers[mode] = classifier_for_mode(clip, mode, pldc_cfg.clip_model)
            except NotDense as exc:
                if args.modes is not None:
                    raise
                print(f"pldc clip-crops: mask_pool left out: {exc}", file=sys.stderr)
        table = classify_gt_crops(classifiers, rec.gt, rec.images, rec.info.image_root)
    except DiccWeightsMissing as exc:
        print(f"pldc clip-crops: {exc.problem}\n  {CLI_HOW_TO_SUPPLY}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, ConfigError, RecordError) as exc:
        print(f"pldc clip-crops: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else run_dir / CLIP_TABLE_FILE
    with atomic_path(out) as tmp:
        table.to_parquet(tmp, index=False)
    n = len(table) // max(1, len(classifiers))
    print(f"CLIP on {n} GT crops of {rec.path.name} -> {out}")
    for row in mode_summary(clip_precision_recall_by_mode(table, len(names))).itertuples():
        print(f"  {row.mode:<10} accuracy {_pct(row.accuracy_pct)}, mean precision {_pct(row.mean_precision_pct)} "
              f"(over the {row.classes_predicted} of {len(names)} classes it predicts), "
              f"mean recall {_pct(row.mean_recall_pct)}")
    print(f"per class and mode: pldc report {run_dir}")
    return 0


def _pct(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.1f}%"
