"""Which DICC mode should a run use? CLIP alone on a run's recorded GT instances, in every mode.

    .venv/bin/python benchmarks/bench_clip_modes.py RUN [--iteration N] [--clip-model M] [--clip-weights W]
        [--out benchmarks/results/clip_modes.txt]

The modes are classified exactly as ``pldc clip-crops RUN`` classifies them (box crop, largest-
component crop, mask pooling). Prints, per mode, the accuracy and the mean of the per-class
precision and recall (percent), then the per-class table. A control follows: each GT's box crop
classified by the tower's own pooling (``encode_image``) and by mask pooling over the whole crop.
With the crop as input the two differ only in the pooling head, so their agreement measures how
close mask pooling's head comes to the tower's; the gap to mask pooling on the whole image is
what the dense features of a scene lose.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report_text import emit, machine_line  # noqa: E402

from pldc_core.config import PldcConfig, load_config  # noqa: E402
from pldc_core.method.dicc import DICC_MODES, classifier_for_mode, load_run_clip  # noqa: E402
from pldc_core.records.clip_crops import classify_gt_crops  # noqa: E402
from pldc_core.records.clip_scores import clip_precision_recall_by_mode, mode_summary  # noqa: E402
from pldc_core.records.store import decode_mask, load_records  # noqa: E402
from pldc_core.run_dir import RunDir  # noqa: E402


@torch.no_grad()
def crop_control(clip, pool, rec) -> tuple[float, float]:
    """Accuracy (fraction) on the GT box crops of ``encode_image`` and of mask pooling the whole crop."""
    from pldc_core.data.coco import read_image

    files = dict(zip(rec.images["image_id"].tolist(), rec.images["file_name"].tolist()))
    tower, pooled, truth = [], [], []
    side = clip.image_size
    whole = torch.ones(1, side, side, dtype=torch.bool)
    for image_id, rows in rec.gt.groupby("image_id", sort=True):
        image = read_image(Path(rec.info.image_root) / files[image_id], int(image_id))
        masks = torch.from_numpy(np.stack([decode_mask(r) for r in rows.to_dict("records")]))
        crops = clip.crops(image, masks)
        embedded = F.normalize(clip.model.encode_image(crops).float(), dim=-1)
        tower.append((embedded @ clip.text_embeddings.T).argmax(1))
        as_images = crops * clip.std + clip.mean  # back to [0, 1]: what mask pooling normalises itself
        pooled.append(torch.stack([pool.probs(crop, whole)[0].argmax() for crop in as_images]))
        truth.append(torch.tensor(rows["gt_class"].to_numpy(np.int64)))
    truth = torch.cat(truth)
    return float((torch.cat(tower) == truth).float().mean()), float((torch.cat(pooled) == truth).float().mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--iteration", type=int, default=None)
    ap.add_argument("--clip-model", default=None, help="default: the run's pldc.clip_model")
    ap.add_argument("--clip-weights", default=None, help="default: the run's pldc.clip_weights")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)

    config = RunDir(Path(args.run)).config
    pldc_cfg = load_config(config, saved=True).pldc if config.is_file() else PldcConfig()
    if args.clip_model:
        pldc_cfg.clip_model = args.clip_model
    rec = load_records(args.run, args.iteration, columns=["image_id"])
    names = rec.info.class_names
    clip = load_run_clip(pldc_cfg, names, "cpu", weights=args.clip_weights, mode="box")
    classifiers = {mode: classifier_for_mode(clip, mode, pldc_cfg.clip_model) for mode in DICC_MODES}
    start = time.perf_counter()
    table = classify_gt_crops(classifiers, rec.gt, rec.images, rec.info.image_root)
    by_mode = clip_precision_recall_by_mode(table, len(names))
    tower, pooled = crop_control(clip, classifiers["mask_pool"], rec)
    command = " ".join(["benchmarks/bench_clip_modes.py", args.run]
                       + [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                          if k not in ("run", "out") and v is not None])
    n = len(table) // len(classifiers)
    lines = [f"# CLIP alone on the {n} GT instances of {args.run} @ {rec.info.iteration}, per DICC mode",
             f"command: .venv/bin/python {command}",
             machine_line(time.perf_counter() - start),
             f"CLIP {pldc_cfg.clip_model} with {args.clip_weights or pldc_cfg.clip_weights}; texts: "
             + (pldc_cfg.class_descriptions or f"'{pldc_cfg.clip_template}'")
             + f"; majority class {100 * np.bincount(table['gt_class'][:n]).max() / n:.1f}% of the instances",
             "| mode | accuracy | mean precision (over the classes it predicts) | mean recall |", "|---|---|---|---|"]
    for row in mode_summary(by_mode).itertuples():
        lines.append(f"| {row.mode} | {row.accuracy_pct:.1f}% | {row.mean_precision_pct:.1f}% "
                     f"({row.classes_predicted} of {len(names)}) | {row.mean_recall_pct:.1f}% |")
    lines += ["per class, precision / recall (-: never predicted / no instance):",
              "| class | instances | " + " | ".join(by_mode) + " |", "|---|---|" + "---|" * len(by_mode)]
    for c, name in enumerate(names):
        cells = []
        for pr in by_mode.values():
            row = pr.per_class.iloc[c]
            cells.append(" / ".join("-" if np.isnan(v) else f"{100 * v:.0f}%" for v in (row.precision, row.recall)))
        lines.append(f"| {name} | {int(by_mode['box'].per_class.iloc[c].support)} | " + " | ".join(cells) + " |")
    lines.append(f"control on the box crops themselves ({clip.image_size} px): the tower's own pooling "
                 f"{100 * tower:.1f}%, mask pooling over the whole crop {100 * pooled:.1f}% accuracy")
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
