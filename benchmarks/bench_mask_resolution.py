"""How well can a mask predicted at 1/s of the input draw a dataset's objects? The ceiling of the mask head.

    .venv/bin/python benchmarks/bench_mask_resolution.py [--dataset synthetic] [--image-size 128]
        [--strides 2 4 8] [--records RUN_DIR@ITERATION] [--out benchmarks/results/mask_resolution.txt]

Mask2Former predicts each query's mask at 1/4 of the input and upsamples the logits bilinearly.
For every val object at the detector's scale (longer side ``image_size``) this takes the best
such mask a head at stride ``s`` could give without seeing finer detail: the object's coverage of
each s x s cell as a probability, its logit upsampled bilinearly and cut at 0 (so edges may fall
between cell centres), and reports its IoU with the object, per size (COCO's limits scaled to the
canvas, as the evaluation scales them). With ``--records``, the IoU of the teacher's kept
pseudo-labels that overlap an object (IoU > 0.5) in those records, per size of the teacher's mask,
for comparison.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report_text import emit, machine_line  # noqa: E402

from pldc_core.data.registry import get_dataset  # noqa: E402
from pldc_core.pretraining.clip import at_detector_scale  # noqa: E402
from pldc_core.records.errors import IOU_MATCH  # noqa: E402
from pldc_core.records.store import load_records  # noqa: E402
from workbench.error_breakdown import SIZES, size_codes  # noqa: E402
from workbench.thresholds import select_kept  # noqa: E402


def best_low_resolution_iou(masks: torch.Tensor, stride: int) -> torch.Tensor:
    """IoU of each bool mask ``[K, H, W]`` with its best stride-``stride`` rendering (see the module)."""
    coverage = F.avg_pool2d(masks[:, None].float(), stride, ceil_mode=True).clamp(0.02, 0.98)
    logits = torch.log(coverage / (1 - coverage))
    drawn = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=False)[:, 0] > 0
    inter = (drawn & masks).flatten(1).sum(1).float()
    union = (drawn | masks).flatten(1).sum(1).float().clamp_min(1)
    return inter / union


def _row(label: str, iou: np.ndarray) -> str:
    if len(iou) == 0:
        return f"| {label} | 0 | - | - | - |"
    return (f"| {label} | {len(iou)} | {np.median(iou):.2f} | {100 * np.mean(iou < 0.8):.0f}% | "
            f"{100 * np.mean(iou < 0.5):.0f}% |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--registry", default=None)
    ap.add_argument("--image-size", type=int, default=128, help="the detector's scale (default: %(default)s)")
    ap.add_argument("--strides", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--records", default=None, help="RUN_DIR@ITERATION: compare with the teacher's pseudo-labels")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    start = time.perf_counter()
    index = get_dataset(args.dataset, data_root=args.data_root, registry_file=args.registry).load_val()
    ious = {s: [] for s in args.strides}
    areas = []
    for image_id in tqdm(index.image_ids, desc="val objects", unit="img", disable=os.environ.get("PLDC_NO_PROGRESS") == "1"):
        masks, labels, _ = index.instances(image_id)
        if len(labels) == 0:
            continue
        _, canvas = at_detector_scale(index.load_image(image_id), masks, args.image_size)
        canvas = canvas[canvas.flatten(1).any(1)]
        areas.append(canvas.flatten(1).sum(1).numpy())
        for s in args.strides:
            ious[s].append(best_low_resolution_iou(canvas, s).numpy())
    area = np.concatenate(areas) if areas else np.zeros(0, np.int64)
    codes = size_codes(area, np.full(len(area), args.image_size), np.full(len(area), args.image_size))
    lines = [f"# The best mask a head at stride s can draw, on the {args.dataset} val objects at {args.image_size} px",
             f"command: .venv/bin/python benchmarks/bench_mask_resolution.py --dataset {args.dataset} "
             f"--image-size {args.image_size} --strides {' '.join(map(str, args.strides))}"
             + (f" --records {args.records}" if args.records else ""),
             machine_line(time.perf_counter() - start),
             "| mask | objects | median IoU | IoU < 0.8 | IoU < 0.5 |", "|---|---|---|---|---|"]
    for s in args.strides:
        iou = np.concatenate(ious[s]) if ious[s] else np.zeros(0)
        for size in ("all", *SIZES):
            where = np.ones(len(iou), bool) if size == "all" else codes == SIZES.index(size)
            lines.append(_row(f"best at stride {s} ({args.image_size // s} x {args.image_size // s}), {size}", iou[where]))
    if args.records:
        run, _, iteration = args.records.rpartition("@")
        rec = load_records(run, int(iteration))
        kept = select_kept(rec.queries, rec.manifest["thresholds"]["filter"])
        kept = kept[kept["iou"] > IOU_MATCH]
        codes = size_codes(kept["area"], kept["height"], kept["width"])
        iou = kept["iou"].to_numpy(np.float64)
        lines.append(f"teacher's kept pseudo-labels over an object (IoU > {IOU_MATCH}), {args.records} "
                     "(size of the teacher's mask; a stride-4 head):")
        for size in ("all", *SIZES):
            lines.append(_row(f"teacher, {size}", iou if size == "all" else iou[codes == SIZES.index(size)]))
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
