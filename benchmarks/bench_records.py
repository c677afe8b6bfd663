"""Cost of recording pseudo-labels vs the teacher's forward passes alone, side by side in one run.

    .venv/bin/python benchmarks/bench_records.py [--checkpoint RUN_OR_CKPT] [--images 500] [--rounds 3]

Without --checkpoint a freshly initialised cpu-quick model is used (the cost of recording does not
depend on the weights much, except through how many masks are non-empty).

Two measurements, both on the same images in the same batches of 8:
- interleaved (the figure the target is judged on): batch by batch, the forward pass alone
  (loading + teacher) and the recording of that batch (``record_batch``: loading + teacher + rows,
  GT matching), in ABBA order, then writing all batches' parquet tables once. Alternating every
  ~0.1 s makes both sides see the same machine: on the shared 2-core machine the forward time of
  a whole 500-image pass drifts by up to 30% between passes, more than the cost being measured.
- whole calls: ``record_pseudo_labels`` against a forward-only pass, alternating per round.
Last, the rows alone at the paper's sizes (100 queries, 256 px mask logits, 640 x 480 images) on
fabricated logits: the CPU time per image that a GPU run pays on top of its forward passes (wall
time of ``query_columns``, which uses worker threads, and the CPU time of all its threads).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pldc_core.config import load_config  # noqa: E402
from pldc_core.data.coco import load_coco  # noqa: E402
from pldc_core.data.registry import get_dataset  # noqa: E402
from pldc_core.data.splits import load_split  # noqa: E402
from pldc_core.method.filters import Thresholds  # noqa: E402
from pldc_core.model.inference import predict_images  # noqa: E402
from pldc_core.model.mask2former import build_model  # noqa: E402
from pldc_core.records.recorder import (record_batch, record_pseudo_labels, records_manifest,  # noqa: E402
                                        sample_record_images)
from pldc_core.records.store import RecordWriter  # noqa: E402


def paper_scale_rows_ms(images: int = 20) -> tuple[float, float]:
    """Milliseconds (wall, CPU of all threads) to build one image's query rows at the paper's sizes,
    from fabricated blob-like logits (medians)."""
    from pldc_core.records.rows import GroundTruth, query_columns

    gen = torch.Generator().manual_seed(0)
    Q, h, w, H, W = 100, 256, 192, 640, 480
    # The logits are made with numpy: a multi-threaded torch op just before the timed call would
    # leave torch's idle threads spinning, taking a core from the rows' own threads.
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    gt_masks = np.zeros((5, H, W), dtype=bool)
    for k in range(5):
        gt_masks[k, 60 * k:60 * k + 100, 80 * k:80 * k + 90] = True
    gt = GroundTruth(gt_masks, np.arange(5), np.arange(5))
    thresholds = {"filter": "ddtf", "c_t": 0.5, "m_t": 0.75, "s_t": 0.3, "mask_area_threshold": 5}
    supercategory = {i: str(i % 12) for i in range(80)}
    times, cpu = [], []
    for i in range(images + 1):
        cy, cx = (torch.rand(Q, generator=gen) * h).numpy(), (torch.rand(Q, generator=gen) * w).numpy()
        radius = (10 + torch.rand(Q, generator=gen) * 50).numpy()
        logits = (radius[:, None, None] - np.sqrt((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2)) / 3
        class_logits = torch.randn(Q, 81, generator=gen)
        start, start_cpu = time.perf_counter(), time.process_time()
        query_columns(i, class_logits, logits, (H, W), thresholds=thresholds, gt=gt, supercategory=supercategory)
        if i:  # the first warms up
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return statistics.median(times) * 1000, statistics.median(cpu) * 1000


def main() -> None:
    load_start = os.getloadavg()[0]
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "records.txt"))
    args = parser.parse_args()
    os.environ["PLDC_NO_PROGRESS"] = "1"
    if args.checkpoint:
        from pldc_core.eval_command import load_trained_model
        from pldc_core.training.checkpoint import load_checkpoint

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
    thresholds = Thresholds.of_config(cfg.pldc).as_dict()
    device = torch.device("cpu")
    manifest = {"run": "bench", "phase": "semi", "config_hash": cfg.hash(), "dataset": cfg.data.dataset}
    batches = [ids[i:i + 8] for i in range(0, len(ids), 8)]
    tmp = Path(tempfile.mkdtemp())

    def forward_only(batch):
        predict_images(model, [index.load_image(j) for j in batch], cfg.data.image_size, device)

    interleaved_f, interleaved_r = [], []
    for r in range(args.rounds):
        f = g = 0.0
        tables = []
        for k, batch in enumerate(batches):
            for step in ((0, 1) if k % 2 == 0 else (1, 0)):  # ABBA: neither side always goes first
                start = time.perf_counter()
                if step == 0:
                    forward_only(batch)
                    f += time.perf_counter() - start
                else:
                    tables.append(record_batch(model, index, batch, thresholds=thresholds,
                                               image_size=cfg.data.image_size, device=device, has_gt=True))
                    g += time.perf_counter() - start
        start = time.perf_counter()
        with RecordWriter(tmp / f"i{r}", 1, records_manifest(manifest, index, 1, thresholds, dicc_enabled=False,
                                                             dicc_w=None)) as writer:
            for t in tables:
                writer.add(*t)
        g += time.perf_counter() - start
        interleaved_f.append(f)
        interleaved_r.append(g)

    forward, full = [], []
    for r in range(args.rounds):
        start = time.perf_counter()
        for batch in batches:
            forward_only(batch)
        forward.append(time.perf_counter() - start)
        start = time.perf_counter()
        record_pseudo_labels(model, index, ids, run_dir=tmp / str(r), iteration=1, manifest=manifest,
                             thresholds=thresholds, image_size=cfg.data.image_size, device=device)
        full.append(time.perf_counter() - start)
    shutil.rmtree(tmp, ignore_errors=True)
    ratios = sorted(g / f for f, g in zip(interleaved_f, interleaved_r))
    fi, gi = statistics.median(interleaved_f), statistics.median(interleaved_r)
    f, g = statistics.median(forward), statistics.median(full)
    paper_ms, paper_cpu_ms = paper_scale_rows_ms()
    text = (f"bench_records: {len(ids)} unlabeled images of the embedded benchmark, {cfg.model.num_queries} queries each, "
            f"{source}, {args.rounds} rounds (median)\n"
            f"machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"{os.cpu_count()} CPUs; load average at the start {load_start:.2f}, at the end {os.getloadavg()[0]:.2f}\n\n"
            f"interleaved batch by batch (ABBA), per round:\n"
            f"  image loading + teacher forward passes only: {fi:7.2f} s\n"
            f"  recording (same + rows, GT IoU; + parquet):  {gi:7.2f} s\n"
            f"  ratio: {gi / fi:.2f} (target <= 1.30); per round: {', '.join(f'{x:.2f}' for x in ratios)}\n"
            f"  extra per image: {(gi - fi) / len(ids) * 1000:.1f} ms\n\n"
            f"whole calls, alternating per round (noisier):\n"
            f"  forward passes only:                {f:7.2f} s\n"
            f"  record_pseudo_labels:               {g:7.2f} s\n"
            f"  ratio: {g / f:.2f}\n\n"
            f"rows alone at the paper's scale (fabricated: 100 queries, 81 logits, 256 x 192 mask logits,\n"
            f"a 640 x 480 image with 5 GT instances; median of 20 images): {paper_ms:.0f} ms per image\n"
            f"(CPU time of its threads: {paper_cpu_ms:.0f} ms; load average now {os.getloadavg()[0]:.2f})\n")
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
