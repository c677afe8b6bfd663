"""What one step of configs/paper.yaml costs, counted on the CPU: FLOPs and saved activations per image.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_paper_scale.py [--sizes 256 384 512] \
        [--out benchmarks/results/paper_scale.txt]

No GPU is needed or used. The paper's model (ResNet-50, 100 queries, 6 encoder and 9 decoder layers,
80 classes, 12,544 loss points; random weights, which cost the same as trained ones) runs one image
at a few crop sizes below the config's 1024 px: the student's forward, set criterion (7 made-up
instances) and backward, with the backbone frozen as paper.yaml has it, and the teacher's forward
without gradients. Counted: FLOPs (torch.utils.flop_counter: matrix products and convolutions; the
deformable attention's grid sampling is not counted) and the bytes autograd saves for the backward
pass (float32, each storage once). Both grow with the pixel count, so each is fitted as
``a + b * pixels`` over the sizes measured and read at 1024 px. A step of paper.yaml is then 24
student images (the weak and the strong view of each of its 8 labeled images, the strong view of
each of its 8 unlabeled ones: ``train.labeled_strong_view``) and 8 teacher images; its batch sizes
are global (``train.batch_scope``), so N processes share these, 1/N each. The same is measured
with the backbone trained, the setting of mmdetection's Mask2Former R-50 table (13.7 GB for 2
images per GPU at 1024 px), as a check of the method.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.autograd.graph import saved_tensors_hooks
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report_text import emit, machine_line  # noqa: E402

from pldc_core.config import load_config  # noqa: E402
from pldc_core.losses import SetCriterion  # noqa: E402
from pldc_core.model.mask2former import build_model  # noqa: E402

COCO_CLASSES = 80
INSTANCES = 7  # COCO has 7.3 instances per training image


def _targets(size: int, generator: torch.Generator) -> list[dict]:
    masks = torch.zeros(INSTANCES, size, size)
    for k in range(INSTANCES):
        y0, x0 = torch.randint(0, size // 2, (2,), generator=generator).tolist()
        h, w = torch.randint(size // 16, size // 2, (2,), generator=generator).tolist()
        masks[k, y0:y0 + h, x0:x0 + w] = 1.0
    return [{"labels": torch.randint(0, COCO_CLASSES, (INSTANCES,), generator=generator), "masks": masks}]


def measure(cfg, size: int, freeze: bool) -> dict:
    """Student forward + loss + backward and teacher forward on one ``size`` px image."""
    cfg.model.freeze_backbone = freeze
    torch.manual_seed(0)
    model = build_model(cfg.model, COCO_CLASSES).train()
    criterion = SetCriterion(COCO_CLASSES, num_points=cfg.model.train_num_points)
    generator = torch.Generator().manual_seed(size)
    image = torch.rand(1, 3, size, size, generator=generator)
    targets = _targets(size, generator)
    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    start = time.perf_counter()
    with FlopCounterMode(display=False) as forward_flops, saved_tensors_hooks(pack, lambda t: t):
        out = model(image)
        loss = criterion(out.class_logits, out.mask_logits, targets, out.aux)["loss"]
    with FlopCounterMode(display=False) as backward_flops:
        loss.backward()
    seconds = time.perf_counter() - start
    with torch.no_grad(), FlopCounterMode(display=False) as teacher_flops:
        model.eval()(image)
    return {"size": size, "student_flops": forward_flops.get_total_flops() + backward_flops.get_total_flops(),
            "teacher_flops": teacher_flops.get_total_flops(), "saved_bytes": sum(storages.values()),
            "seconds": seconds, "params": sum(p.numel() for p in model.parameters()),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def at_1024(rows: list[dict], key: str) -> float:
    """``key`` fitted as a + b * pixels over the measured sizes, read at 1024 x 1024."""
    pixels = np.array([r["size"] ** 2 for r in rows], dtype=float)
    values = np.array([r[key] for r in rows], dtype=float)
    slope, intercept = np.polyfit(pixels, values, 1)
    return float(intercept + slope * 1024 ** 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 384, 512])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "paper_scale.txt"))
    args = parser.parse_args()
    started = time.perf_counter()
    cfg = load_config(ROOT / "configs" / "paper.yaml", ["model.backbone_weights=null"])
    t = cfg.train
    labeled_views = 2 if t.labeled_strong_view else 1
    batch = labeled_views * t.batch_labeled + t.batch_unlabeled  # the student's images per step
    scope = ("in all, split over the processes (train.batch_scope: global)" if t.batch_scope == "global"
             else "per process (train.batch_scope: per_rank)")
    lines = ["bench_paper_scale: configs/paper.yaml's model on one image, counted on the CPU (no GPU used)",
             f"command: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_paper_scale.py --sizes "
             f"{' '.join(map(str, args.sizes))}", ""]
    results = {}
    for freeze in (True, False):
        rows = [measure(cfg, size, freeze) for size in args.sizes]
        results[freeze] = rows
        lines.append(f"backbone {'frozen (paper.yaml)' if freeze else 'trained (mmdetection table)'}: "
                     f"{rows[0]['params'] / 1e6:.1f} M parameters, {rows[0]['trainable'] / 1e6:.1f} M trained")
        for r in rows:
            lines.append(f"  {r['size']:>4} px: student forward+loss+backward {r['student_flops'] / 1e9:7.1f} GFLOP, "
                         f"teacher forward {r['teacher_flops'] / 1e9:6.1f} GFLOP, saved for backward "
                         f"{r['saved_bytes'] / 2 ** 30:5.2f} GiB (float32); {r['seconds']:.1f} s here")
        lines.append(f"  fitted at 1024 px: student {at_1024(rows, 'student_flops') / 1e9:.0f} GFLOP, teacher "
                     f"{at_1024(rows, 'teacher_flops') / 1e9:.0f} GFLOP, saved {at_1024(rows, 'saved_bytes') / 2 ** 30:.1f} "
                     "GiB per image")
    frozen, trained = results[True], results[False]
    student = at_1024(frozen, "student_flops")
    teacher = at_1024(frozen, "teacher_flops")
    saved = at_1024(frozen, "saved_bytes")
    state = (frozen[0]["params"] * 4 * 2 + frozen[0]["trainable"] * 4 * 3) / 2 ** 30  # student+teacher, grad, AdamW
    step_flops = batch * student + cfg.train.batch_unlabeled * teacher
    lines += [
        "",
        f"one paper.yaml step ({t.batch_labeled} labeled + {t.batch_unlabeled} unlabeled images {scope}, "
        f"{cfg.data.image_size} px): {batch} student images "
        + ("(weak and strong view of each labeled image) " if t.labeled_strong_view else "")
        + f"+ {t.batch_unlabeled} teacher images",
        f"  compute: {batch} x {student / 1e9:.0f} + {cfg.train.batch_unlabeled} x {teacher / 1e9:.0f} GFLOP "
        f"= {step_flops / 1e12:.1f} TFLOP",
        f"  saved activations: {batch} x {saved / 2 ** 30:.1f} GiB = {batch * saved / 2 ** 30:.0f} GiB in float32; "
        f"with bfloat16 autocast (paper.yaml: train.amp) most of them are stored at half that size",
        f"  weights, gradients and AdamW state of student and teacher: {state:.1f} GiB"
        + (" (per process; compute and activations above are 1/N per process with N processes)"
           if t.batch_scope == "global" else ""),
        "",
        f"check against mmdetection's Mask2Former R-50 (backbone trained, 2 images per GPU at 1024 px, listed at "
        f"13.7 GB): 2 x {at_1024(trained, 'saved_bytes') / 2 ** 30:.1f} GiB saved here",
        machine_line(time.perf_counter() - started),
    ]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
