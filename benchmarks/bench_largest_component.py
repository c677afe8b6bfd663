"""DICC's largest-part crops (``pldc.dicc_crop: component``) on the CPU: scipy's labelling against the
max-pooling one, side by side in one run.

    .venv/bin/python benchmarks/bench_largest_component.py [--images 100] [--repeats 5]
        [--out benchmarks/results/largest_component.txt]

Needs the embedded dataset (`pldc data make-synthetic`). The masks are the ground-truth instances
of the first ``--images`` val images (bool, at the image's resolution, as DICC gets the teacher's
upsampled pseudo-masks), each image's masks at once, as DICC calls it. Both versions run on the
same masks, interleaved, ``--repeats`` times; the table gives the median seconds per image and the
speed-up, and the check that both keep the same pixels. The whole of ``ClipClassifier.probs`` with the
shipped CLIP is timed the same way, so the speed-up says what it saves DICC.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_step import machine_line, save_report  # noqa: E402
from pldc_core.config import load_config  # noqa: E402
from pldc_core.data.coco import annotation_mask, read_coco_json  # noqa: E402
from pldc_core.method import dicc  # noqa: E402


def val_masks(limit: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(random image [3, H, W], bool masks [K, H, W]) of the first ``limit`` val images with objects."""
    coco = read_coco_json(ROOT / "data" / "synthetic" / "annotations" / "instances_val.json")
    anns: dict[int, list] = {}
    for a in coco["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    out = []
    for info in coco["images"][:limit]:
        h, w = info["height"], info["width"]
        masks = [torch.from_numpy(annotation_mask(a["segmentation"], h, w).astype(bool))
                 for a in anns.get(info["id"], [])]
        if masks:
            out.append((torch.rand(3, h, w), torch.stack(masks)))
    return out


def timed(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(*item)
    return (time.perf_counter() - start) / len(items)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "largest_component.txt"))
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    items = val_masks(args.images)
    same = all(torch.equal(dicc.largest_component(m), dicc.largest_component(m, max_iters=sum(m.shape[1:])))
               for _, m in items)
    cfg = load_config(str(ROOT / "benchmarks" / "quality-30min-b3000.yaml"))
    names = [c["name"] for c in read_coco_json(ROOT / "data" / "synthetic" / "annotations" /
                                               "instances_val.json")["categories"]]
    clip = dicc.load_run_clip(cfg.pldc, names)
    scipy_version = dicc.largest_component

    def pooled(masks):
        return scipy_version(masks, max_iters=sum(masks.shape[1:]))

    def clip_with(component_fn):
        def run(image, masks):
            dicc.largest_component = component_fn
            try:
                clip.probs(image, masks)
            finally:
                dicc.largest_component = scipy_version
        return run

    versions = {"largest part, max-pooling": lambda _, m: pooled(m),
                "largest part, scipy": lambda _, m: scipy_version(m),
                "CLIP probs, max-pooling": clip_with(pooled),
                "CLIP probs, scipy": clip_with(scipy_version)}
    seconds = {name: [] for name in versions}
    for _ in range(args.repeats):
        for name, fn in versions.items():
            seconds[name].append(timed(fn, items))
    median = {name: statistics.median(s) for name, s in seconds.items()}
    objects = sum(len(m) for _, m in items) / len(items)
    lines = [f"bench_largest_component: the ground-truth masks of {len(items)} val images ({objects:.1f} objects per "
             f"image, at the image's resolution), each image's masks in one call, median of {args.repeats} passes; "
             f"CLIP: {cfg.pldc.clip_weights} (component crops)",
             machine_line(load_start),
             f"same pixels kept by both versions on every mask: {'yes' if same else 'NO'}", "",
             f"{'per image':28s} {'ms':>8s} {'speed-up':>9s}"]
    for name in versions:
        base = median[name.split(",")[0] + ", max-pooling"]
        lines.append(f"{name:28s} {1000 * median[name]:8.2f} {base / median[name]:8.1f}x")
    save_report(lines, args.out)


if __name__ == "__main__":
    main()
