"""Are a dataset's classes learnable at the detector's training scale? (acceptance check (a))

    .venv/bin/python benchmarks/bench_learnable.py [--dataset synthetic] [--image-size 128]
        [--epochs 15] [--pixels-only] [--out benchmarks/results/learnable.txt]

Every ground-truth instance of the train and val sets is cut out of its image *as the detector
sees it* (the image resized so its longer side is ``image_size``, as in training and
evaluation): a square window around the object's box (1.5x its longer side, at least 12 px),
resampled to 32 x 32, with the instance's mask as a fourth channel. A small CNN trained on all
train crops (every label) is scored on the val crops. It answers one question: do the pixels a
detector gets at this scale decide the class? Accuracy far below 100% means no detector can
reach a high AP on this data at this scale, whatever its training.

The mask channel hands the classifier the true outline, which on a dataset of shapes nearly
names the class by itself; a detector must find that outline in the pixels. ``--pixels-only``
drops the channel, so the window's RGB pixels alone have to decide: the stricter question.

Prints overall and per-size accuracy, per-class recall and the most frequent confusions.
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
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report_text import emit, machine_line  # noqa: E402

from pldc_core.data.coco import annotation_mask, load_coco  # noqa: E402
from pldc_core.data.registry import get_dataset  # noqa: E402
from pldc_core.structures import size_category  # noqa: E402

CROP = 32


def instance_crops(index, image_size: int, progress: bool = True):
    """``(crops [N, 4, CROP, CROP], labels [N], sizes [N])`` of every non-crowd instance."""
    crops, labels, sizes = [], [], []
    for image_id in tqdm(index.image_ids, desc="crops", unit="img", disable=not progress):
        info = index.image_info(image_id)
        height, width = info["height"], info["width"]
        anns = [a for a in index.annotations(image_id) if not a.get("iscrowd", 0)]
        if not anns:
            continue
        scale = image_size / max(height, width)
        out_hw = (max(1, round(height * scale)), max(1, round(width * scale)))
        image = F.interpolate(index.load_image(image_id)[None], size=out_hw, mode="bilinear", antialias=True,
                              align_corners=False)
        masks = torch.stack([torch.from_numpy(annotation_mask(a["segmentation"], height, width)) for a in anns])
        masks = F.interpolate(masks[:, None].float(), size=out_hw, mode="bilinear", antialias=True,
                              align_corners=False)
        boxes = []
        for a in anns:
            x, y, w, h = (v * scale for v in a["bbox"])
            side = max(1.5 * max(w, h), 12.0)
            cx, cy = x + w / 2, y + h / 2
            boxes.append([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
        boxes = torch.tensor(boxes, dtype=torch.float32)
        pix = roi_align(image, [boxes], CROP, aligned=True)                          # [K, 3, C, C]
        alpha = torch.cat([roi_align(masks[k:k + 1], [boxes[k:k + 1]], CROP, aligned=True) for k in range(len(anns))])
        crops.append(torch.cat([pix, alpha], dim=1))
        labels += [index.categories.index_of(a["category_id"]) for a in anns]
        sizes += [size_category(index.area(a["id"]), height, width) for a in anns]
    return torch.cat(crops), torch.tensor(labels), np.array(sizes)


def small_cnn(num_classes: int, in_channels: int = 4) -> nn.Module:
    def block(cin, cout, stride):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    return nn.Sequential(block(in_channels, 32, 1), block(32, 64, 2), block(64, 64, 1), block(64, 128, 2),
                         block(128, 128, 1), block(128, 256, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(256, num_classes))


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips and 90-degree rotations (the shapes' classes do not depend on orientation)."""
    if torch.rand((), generator=generator) < 0.5:
        x = x.flip(-1)
    return torch.rot90(x, int(torch.randint(0, 4, (), generator=generator)), dims=(-2, -1))


def train_classifier(x, y, num_classes: int, epochs: int, seed: int, progress: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = small_cnn(num_classes, x.shape[1])
    steps = epochs * ((len(x) + 127) // 128)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    model.train()
    bar = tqdm(total=steps, desc="classifier", disable=not progress)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(128):
            loss = F.cross_entropy(model(augment(x[idx], gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
    bar.close()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(chunk).argmax(1) for chunk in x.split(512)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--registry", default=None)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pixels-only", action="store_true", help="RGB window only, without the mask channel")
    ap.add_argument("--out", default=None, help="also write the report here")
    args = ap.parse_args()
    progress = os.environ.get("PLDC_NO_PROGRESS") != "1"
    torch.set_num_threads(os.cpu_count() or 1)

    spec = get_dataset(args.dataset, data_root=args.data_root, registry_file=args.registry)
    train = load_coco(spec.train_json, spec.image_root_train)
    val = load_coco(spec.val_json, spec.image_root_val)
    names = train.categories.names
    start = time.perf_counter()
    xt, yt, _ = instance_crops(train, args.image_size, progress)
    xv, yv, sv = instance_crops(val, args.image_size, progress)
    if args.pixels_only:
        xt, xv = xt[:, :3].contiguous(), xv[:, :3].contiguous()
    model = train_classifier(xt, yt, len(names), args.epochs, args.seed, progress)
    pred = predict(model, xv)
    seconds = time.perf_counter() - start

    correct = (pred == yv).numpy()
    majority = Counter(yt.tolist()).most_common(1)[0]
    lines = [f"# Classes learnable at the training scale: {args.dataset}, longer side {args.image_size} px",
             f"command: .venv/bin/python benchmarks/bench_learnable.py --dataset {args.dataset} "
             f"--image-size {args.image_size} --epochs {args.epochs} --seed {args.seed}"
             + (" --pixels-only" if args.pixels_only else ""),
             machine_line(seconds),
             f"train crops {len(xt)}, val crops {len(xv)}; {32}x{32} px, "
             f"{'RGB only' if args.pixels_only else 'RGB + mask'}, {args.epochs} epochs",
             f"val accuracy: {100 * correct.mean():.1f}% (majority class '{names[majority[0]]}': "
             f"{100 * (yv == majority[0]).float().mean():.1f}%)"]
    for size in ("small", "medium", "large"):
        sel = sv == size
        if sel.any():
            lines.append(f"  {size:<6} objects: {100 * correct[sel].mean():.1f}% of {int(sel.sum())}")
    lines.append("per-class recall:")
    for c, name in enumerate(names):
        sel = (yv == c).numpy()
        if sel.any():
            lines.append(f"  {name:<18} {100 * correct[sel].mean():5.1f}% of {int(sel.sum())}")
    confusions = Counter((names[t], names[p]) for t, p in zip(yv.tolist(), pred.tolist()) if t != p)
    wrong = max(1, int((~correct).sum()))
    lines.append("most frequent confusions (true -> predicted, share of all errors):")
    for (t, p), n in confusions.most_common(6):
        lines.append(f"  {t} -> {p}: {n} ({100 * n / wrong:.0f}%)")
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
