"""`pldc clip-crops`: CLIP alone on the ground-truth objects of a checkpoint's records (the paper's Table II).

DICC trusts CLIP more early in training; how far CLIP can be trusted on a dataset is measured by
classifying every GT instance's crop (the same crops DICC makes of pseudo-masks) with CLIP only.
The table written here (one row per GT instance) is what ``workbench.dicc_report.clip_precision_recall``
and ``pldc report`` turn into per-class precision and recall.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from pldc_core.run_dir import CLIP_TABLE_FILE, RunDir


def classify_gt_crops(clip, gt: pd.DataFrame, images: pd.DataFrame, image_root: str | Path) -> pd.DataFrame:
    """CLIP's class for each GT instance of a records' ``gt`` table (crops as DICC makes them).

    ``clip``: a ``ClipClassifier`` whose categories are the records' classes, in index order.
    ``images`` maps ``image_id`` to ``file_name`` under ``image_root``. Returns one row per GT:
    ``image_id, gt_id, gt_class, clip_pred, clip_prob`` (CLIP's probability of its class) and
    ``clip_prob_gt`` (of the true class).
    """
    from pldc_core.data.coco import read_image
    from pldc_core.records.store import decode_mask

    files = dict(zip(images["image_id"].tolist(), images["file_name"].tolist()))
    missing = sorted(set(gt["image_id"].tolist()) - set(files))
    if missing:
        raise ValueError(f"classify_gt_crops: GT of image ids {missing[:5]} that the images table lacks")
    parts = []
    groups = gt.groupby("image_id", sort=True)
    for image_id, rows in tqdm(groups, total=groups.ngroups, desc="CLIP on GT crops", leave=False,
                               disable=os.environ.get("PLDC_NO_PROGRESS") == "1"):
        rows = rows.reset_index(drop=True)
        image = read_image(Path(image_root) / files[image_id], int(image_id))
        masks = torch.from_numpy(np.stack([decode_mask(r) for r in rows.to_dict("records")]))
        if tuple(masks.shape[-2:]) != tuple(image.shape[-2:]):
            raise ValueError(f"{Path(image_root) / files[image_id]}: image is {tuple(image.shape[-2:])} but its GT "
                             f"masks are {tuple(masks.shape[-2:])}")
        probs = clip.probs(image, masks).cpu().numpy()
        gt_class = rows["gt_class"].to_numpy(np.int64)
        parts.append(pd.DataFrame({
            "image_id": rows["image_id"].to_numpy(np.int64), "gt_id": rows["gt_id"].to_numpy(np.int64),
            "gt_class": gt_class, "clip_pred": probs.argmax(axis=1).astype(np.int64),
            "clip_prob": probs.max(axis=1).astype(np.float32),
            "clip_prob_gt": probs[np.arange(len(rows)), gt_class].astype(np.float32)}))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in (
            ("image_id", "int64"), ("gt_id", "int64"), ("gt_class", "int64"), ("clip_pred", "int64"),
            ("clip_prob", "float32"), ("clip_prob_gt", "float32"))})
    return pd.concat(parts, ignore_index=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory (holds records/iter_*/ with ground truth)")
    parser.add_argument("--clip-weights", help="CLIP checkpoint (default: the run's pldc.clip_weights)")
    parser.add_argument("--clip-model", help="open_clip architecture (default: the run's pldc.clip_model)")
    parser.add_argument("--iteration", type=int, help="whose records' GT to use (default: the latest)")
    parser.add_argument("--out", help=f"output parquet (default: RUN/{CLIP_TABLE_FILE}, which pldc report reads)")
    parser.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from pldc_core.atomic import atomic_path
    from pldc_core.config import ConfigError, PldcConfig, load_config
    from pldc_core.distributed import pick_device
    from pldc_core.method.dicc import CLI_HOW_TO_SUPPLY, DiccWeightsMissing, load_run_clip
    from pldc_core.records.schema import Manifest
    from pldc_core.records.store import RecordError, load_records

    run_dir = Path(args.run)
    try:
        config_file = RunDir(run_dir).config
        pldc_cfg = load_config(config_file).pldc if config_file.is_file() else PldcConfig()
        if args.clip_model:
            pldc_cfg.clip_model = args.clip_model
        rec = load_records(run_dir, args.iteration, columns=["image_id"])
        if not rec.manifest.get("has_gt"):
            raise ValueError(f"{rec.path}: these records have no ground truth (records of images without "
                             f"annotations); CLIP's precision and recall need GT instances")
        names = Manifest.of(rec.manifest).class_names
        clip = load_run_clip(pldc_cfg, names, pick_device(args.device), weights=args.clip_weights)
        table = classify_gt_crops(clip, rec.gt, rec.images, rec.manifest["image_root"])
    except DiccWeightsMissing as exc:
        print(f"pldc clip-crops: {exc.problem}\n  {CLI_HOW_TO_SUPPLY}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, ConfigError, RecordError) as exc:
        print(f"pldc clip-crops: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else run_dir / CLIP_TABLE_FILE
    with atomic_path(out) as tmp:
        table.to_parquet(tmp, index=False)
    accuracy = f"{100 * float((table['clip_pred'] == table['gt_class']).mean()):.1f}%" if len(table) else "n/a"
    print(f"CLIP on {len(table)} GT crops of {rec.path.name}: accuracy {accuracy} -> {out}")
    return 0
