"""How far can DICC trust a CLIP on a dataset? Zero-shot CLIP on every ground-truth crop of its val set.

    .venv/bin/python benchmarks/bench_clip.py [--clip-model weights/upstream-clip.json]
        [--clip-weights weights/upstream-clip.pt] [--dataset synthetic] [--out benchmarks/results/clip.txt]

Each val image is resized so its longer side is ``image_size`` (the detector's scale, where DICC
makes its crops); every instance is cropped as DICC crops a pseudo-mask and classified with the
prompt ``pldc.clip_template`` over the dataset's class names. Prints accuracy, per-class
precision and recall (the paper's Table II) and the most frequent confusions.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report_text import emit, machine_line  # noqa: E402

from pldc_core.config import PldcConfig  # noqa: E402
from pldc_core.data.registry import get_dataset  # noqa: E402
from pldc_core.method.dicc import ClipClassifier  # noqa: E402
from pldc_core.pretraining.clip import at_detector_scale  # noqa: E402


@torch.no_grad()
def classify(clip: ClipClassifier, index, image_size: int, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(true labels, CLIP's labels)`` of every instance of ``index``'s images."""
    truth, pred = [], []
    for image_id in tqdm(index.image_ids, desc="CLIP on GT crops", unit="img", disable=not progress):
        masks, labels, _ = index.instances(image_id)
        if len(labels) == 0:
            continue
        image, canvas = at_detector_scale(index.load_image(image_id), masks, image_size)
        pred.append(clip.probs(image, canvas).argmax(1).numpy())
        truth.append(labels.numpy())
    return np.concatenate(truth), np.concatenate(pred)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clip-model", default="weights/upstream-clip.json")
    ap.add_argument("--clip-weights", default="weights/upstream-clip.pt")
    ap.add_argument("--template", default=PldcConfig.clip_template)
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--registry", default=None)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    progress = os.environ.get("PLDC_NO_PROGRESS") != "1"

    val = get_dataset(args.dataset, data_root=args.data_root, registry_file=args.registry).load_val()
    names = val.categories.names
    clip = ClipClassifier.load(args.clip_model, pretrained=args.clip_weights)
    clip.set_categories(names, template=args.template)
    start = time.perf_counter()
    truth, pred = classify(clip, val, args.image_size, progress)
    correct = truth == pred
    lines = [f"# Zero-shot CLIP on the GT crops of {args.dataset} val (as DICC crops them)",
             f"command: .venv/bin/python benchmarks/bench_clip.py --clip-model {args.clip_model} "
             f"--clip-weights {args.clip_weights} --dataset {args.dataset} --image-size {args.image_size}",
             machine_line(time.perf_counter() - start),
             f"prompt '{args.template}'; {len(truth)} instances; accuracy {100 * correct.mean():.1f}% "
             f"(majority class {100 * np.bincount(truth).max() / len(truth):.1f}%)",
             "| class | precision | recall | instances |", "|---|---|---|---|"]
    for c, name in enumerate(names):
        n_true, n_pred = int((truth == c).sum()), int((pred == c).sum())
        hit = int(((truth == c) & (pred == c)).sum())
        precision = f"{100 * hit / n_pred:.1f}%" if n_pred else "- (never predicted)"
        recall = f"{100 * hit / n_true:.1f}%" if n_true else "-"
        lines.append(f"| {name} | {precision} | {recall} | {n_true} |")
    confusions = Counter((names[t], names[p]) for t, p in zip(truth, pred) if t != p)
    wrong = max(1, int((~correct).sum()))
    lines.append("most frequent confusions (true -> CLIP, share of all errors): " + "; ".join(
        f"{t} -> {p} {100 * n / wrong:.0f}%" for (t, p), n in confusions.most_common(5)))
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
