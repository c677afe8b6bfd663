"""Cost of recording pseudo-labels vs the teacher's forward passes alone, side by side in one run.

    .venv/bin/python benchmarks/bench_records.py [--checkpoint RUN_OR_CKPT] [--images 500] [--rounds 2]

Without --checkpoint a freshly initialised cpu-quick model is used (the cost of recording does not
depend on the weights much, except through how many masks are non-empty). Each round times the
forward passes alone (same images, same batches) and the full recording (forward + rows + GT
matching + parquet), alternating so that machine load hits both alike.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pldc_core.config import load_config  # noqa: E402
from pldc_core.data.coco import load_coco  # noqa: E402
from pldc_core.data.registry import get_dataset  # noqa: E402
from pldc_core.data.splits import load_split  # noqa: E402
from pldc_core.inference import predict_images  # noqa: E402
from pldc_core.model import build_model  # noqa: E402
from pldc_core.recording import record_pseudo_labels, sample_record_images  # noqa: E402


def main() -> None:
    load_start = os.getloadavg()[0]
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "records.txt"))
    args = parser.parse_args()
    os.environ["PLDC_NO_PROGRESS"] = "1"
    if args.checkpoint:
        from pldc_core.checkpoint import load_checkpoint
        from pldc_core.eval_command import load_trained_model

        model, cfg, _ = load_trained_model(load_checkpoint(args.checkpoint), "teacher", torch.device("cpu"))
        source = args.checkpoint
    else:
        cfg = load_config(ROOT / "configs" / "cpu-quick.yaml")
        model = build_model(cfg.model, 10).eval()
        source = "untrained cpu-quick model"
    spec = get_dataset(cfg.data.dataset, data_root=str(ROOT / cfg.data.data_root))
    index = load_coco(spec.train_json, spec.image_root_train)
    unlabeled = load_split(ROOT / "data" / "splits" / f"{cfg.data.dataset}.json", cfg.data.percent, 0)[1]
    ids = sample_record_images(unlabeled, args.images, 0)
    p = cfg.pldc
    thresholds = {"filter": p.filter, "c_t": p.c_t, "m_t": p.m_t, "s_t": p.s_t}
    device = torch.device("cpu")
    forward, full = [], []
    tmp = Path(tempfile.mkdtemp())
    for r in range(args.rounds):
        start = time.perf_counter()
        for i in range(0, len(ids), 8):
            batch = [index.load_image(j) for j in ids[i:i + 8]]
            predict_images(model, batch, cfg.data.image_size, device)
        forward.append(time.perf_counter() - start)
        start = time.perf_counter()
        record_pseudo_labels(model, index, ids, run_dir=tmp / str(r), iteration=1,
                             manifest={"run": "bench", "phase": "semi", "config_hash": cfg.hash(), "dataset": "synthetic"},
                             thresholds=thresholds, image_size=cfg.data.image_size, device=device)
        full.append(time.perf_counter() - start)
    f, g = statistics.median(forward), statistics.median(full)
    text = (f"bench_records: {len(ids)} unlabeled images of the embedded benchmark, {cfg.model.num_queries} queries each, "
            f"{source}, {args.rounds} rounds (median)\n"
            f"machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"{os.cpu_count()} CPUs; load average at the start {load_start:.2f}, at the end {os.getloadavg()[0]:.2f}\n\n"
            f"image loading + teacher forward passes only: {f:7.2f} s\n"
            f"full recording (same + rows, GT IoU, parquet): {g:7.2f} s\n"
            f"ratio: {g / f:.2f} (target <= 1.30)\n")
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
