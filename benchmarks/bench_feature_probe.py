"""Do backbone weights carry class information where the detector needs it? (acceptance check (b))

    .venv/bin/python benchmarks/bench_feature_probe.py --weights weights/upstream-backbone-tiny.pt
        [--dataset synthetic] [--image-size 128] [--out benchmarks/results/feature_probe.txt]

Whole benchmark scenes go through the backbone as the detector sees them (longer side
``image_size``, zero-padded square). For every ground-truth instance, each stage's feature map is
averaged under the instance's mask (the mask area-resampled to that stage's grid), and a
logistic regression fitted on the train instances classifies the val instances. Printed per
stage (strides 4-32) and for all stages together, next to the majority rate and the same probe
on randomly initialised weights of the same architecture (the floor).
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

from pldc_core.data.augment import EvalResize  # noqa: E402
from pldc_core.data.coco import load_coco  # noqa: E402
from pldc_core.data.registry import get_dataset  # noqa: E402
from pldc_core.model.mask2former import IMAGENET_MEAN, IMAGENET_STD, load_backbone_weights, resnet_config  # noqa: E402


def build_backbone(name: str, weights: str | None, seed: int = 0):
    from transformers import ResNetBackbone
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(seed)
    backbone = ResNetBackbone(resnet_config(name))
    if weights:
        load_backbone_weights(backbone, weights)
    return backbone.eval()


@torch.no_grad()
def mask_pooled_features(backbone, index, image_ids, image_size: int, progress: bool = True):
    """``(features per stage [N, C_s], labels [N])`` of every instance of ``image_ids``."""
    resize = EvalResize(image_size)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    feats: list[list[torch.Tensor]] = []
    labels: list[int] = []
    for image_id in tqdm(image_ids, desc="features", unit="img", disable=not progress):
        masks, labs, _ = index.instances(image_id)
        if len(labs) == 0:
            continue
        image, (h, w) = resize(index.load_image(image_id))
        maps = backbone((image[None] - mean) / std).feature_maps
        canvas = torch.zeros(len(labs), image_size, image_size)
        canvas[:, :h, :w] = F.interpolate(masks[:, None].float(), size=(h, w), mode="bilinear",
                                          antialias=True, align_corners=False)[:, 0]
        per_stage = []
        for fmap in maps:
            weight = F.adaptive_avg_pool2d(canvas[:, None], fmap.shape[-2:])[:, 0]           # [K, h_s, w_s]
            weight = weight / weight.sum(dim=(1, 2), keepdim=True).clamp_min(1e-8)
            per_stage.append(torch.einsum("khw,chw->kc", weight, fmap[0]))
        feats.append(per_stage)
        labels += labs.tolist()
    stages = [torch.cat([f[s] for f in feats]).numpy() for s in range(len(feats[0]))]
    return stages, np.array(labels)


def probe(train_x, train_y, val_x, val_y) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))
    clf.fit(train_x, train_y)
    return float((clf.predict(val_x) == val_y).mean())


def probe_weights(name: str, weights: str | None, train, train_ids, val, image_size: int,
                  progress: bool) -> list[float]:
    backbone = build_backbone(name, weights)
    tx, ty = mask_pooled_features(backbone, train, train_ids, image_size, progress)
    vx, vy = mask_pooled_features(backbone, val, val.image_ids, image_size, progress)
    scores = [probe(a, ty, b, vy) for a, b in zip(tx, vx)]
    scores.append(probe(np.concatenate(tx, 1), ty, np.concatenate(vx, 1), vy))
    return scores


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", required=True, help="backbone state dict (as model.backbone_weights loads)")
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--registry", default=None)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--train-images", type=int, default=1000, help="first N train images fit the probe")
    ap.add_argument("--out", default=None, help="also write the report here")
    args = ap.parse_args()
    progress = os.environ.get("PLDC_NO_PROGRESS") != "1"

    spec = get_dataset(args.dataset, data_root=args.data_root, registry_file=args.registry)
    train = load_coco(spec.train_json, spec.image_root_train)
    val = load_coco(spec.val_json, spec.image_root_val)
    start = time.perf_counter()
    ids = train.image_ids[: args.train_images]
    results = {label: probe_weights(args.backbone, w, train, ids, val, args.image_size, progress)
               for label, w in (("pretrained", args.weights), ("random init", None))}
    labels = np.array([lab for i in val.image_ids for lab in val.instances(i)[1].tolist()])
    majority = np.bincount(labels).max() / len(labels)
    lines = [f"# Class information in backbone features under each object's mask, whole scenes: {args.dataset}",
             f"command: .venv/bin/python benchmarks/bench_feature_probe.py --weights {args.weights} "
             f"--backbone {args.backbone} --dataset {args.dataset} --image-size {args.image_size} "
             f"--train-images {args.train_images}",
             machine_line(time.perf_counter() - start),
             f"linear probe (logistic regression) fitted on the instances of {len(ids)} train images, "
             f"scored on all {len(val.image_ids)} val images; majority class {100 * majority:.1f}%",
             "| weights | stride 4 | stride 8 | stride 16 | stride 32 | all stages |",
             "|---|---|---|---|---|---|"]
    for label, scores in results.items():
        lines.append(f"| {label} | " + " | ".join(f"{100 * s:.1f}%" for s in scores) + " |")
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
