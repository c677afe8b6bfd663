"""Benchmark of `pldc fiftyone`'s dataset build on a large fabricated run (issue 6: 10,000 images
x 100 queries).

Fabrication (not timed): one checkpoint of ``--images`` x ``--queries`` records written with the
real record writer. The scalar columns come from
``pldc_core.records.fabricated_run.fabricate_query_table``
(consistent c, m, s and error types); DDTF keeps at the paper's thresholds (c_t 0.85, m_t 0.9:
about 13% of the queries here, more than a trained teacher keeps). This script adds the
per-pixel columns that table leaves empty: each query's mask is an ellipse filling its box (18%
of the queries are empty, as "no pixel above 0.5" queries are), encoded as COCO RLE at
``--height`` x ``--width``, and its uncertainty PNG (1/4 resolution) is one of 256 pre-drawn
rings. Each image has 3 ground-truth ellipses. Image files are not written (the build never
reads them).

Timed, in a fresh child process against a private mongod (as the tests run it):
``apps.fiftyone_app.export.build_dataset`` without evaluation (samples, ground truth, pseudo-labels
with masks, uncertainty heatmaps, saved views), then FiftyOne's ``evaluate_detections`` of the
kept pseudo-labels on the first ``--eval-images`` images (it costs about linearly in images),
then a second build (the idempotent no-op). Peak memory: the child's peak RSS
(``ru_maxrss``) and mongod's (``VmHWM``).

    .venv/bin/python benchmarks/bench_fiftyone.py [--images 10000] [--queries 100] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pycocotools.mask as mask_utils

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.* when run as a script

from pldc_core.records.fabricated_run import categories, fabricate_query_table  # noqa: E402
from pldc_core.records.rows import build_image_row, list_array  # noqa: E402
from pldc_core.records.schema import QUERY_SCHEMA  # noqa: E402
from pldc_core.records.store import RecordWriter  # noqa: E402

NUM_CLASSES = 80
ITERATION = 1000
GT_PER_IMAGE = 3
IMAGES_PER_WRITE = 200
PAPER_THRESHOLDS = {"filter": "ddtf", "c_t": 0.85, "m_t": 0.9, "s_t": 0.765}


def ellipse_rles(boxes: np.ndarray, height: int, width: int) -> list[str]:
    """COCO compressed RLE of the ellipse inscribed in each integer box ``[x, y, w, h]``."""
    out = []
    for x, y, w, h in boxes.astype(np.int64).tolist():
        cols = np.arange(x, x + w)
        t = ((cols + 0.5) - (x + w / 2)) / (w / 2)
        half = (h / 2) * np.sqrt(np.clip(1 - t * t, 0, 1))
        r0 = np.clip(np.floor(y + h / 2 - half + 0.5), y, y + h - 1).astype(np.int64)
        r1 = np.clip(np.ceil(y + h / 2 + half - 0.5), r0 + 1, y + h).astype(np.int64)
        bounds = np.stack([cols * height + r0, cols * height + r1], axis=1).reshape(-1)
        counts = np.diff(np.concatenate([[0], bounds, [height * width]]))
        out.append(mask_utils.frPyObjects({"size": [height, width], "counts": counts.tolist()}, height,
                                          width)["counts"].decode("ascii"))
    return out


def ring_pngs(n: int, hw: tuple[int, int], rng: np.random.Generator) -> list[bytes]:
    """``n`` uint8 uncertainty PNGs: u = 1 near an elliptic edge, falling off to 0."""
    import io

    from PIL import Image

    h, w = hw
    out = []
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    for _ in range(n):
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        ry, rx = rng.uniform(0.05, 0.3) * h, rng.uniform(0.05, 0.3) * w
        d = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
        u = np.clip(1 - 4 * np.abs(d - 1), 0, 1)
        buf = io.BytesIO()
        Image.fromarray(np.rint(u * 255).astype(np.uint8), mode="L").save(buf, format="PNG", compress_level=1)
        out.append(buf.getvalue())
    return out


def fabricate(run_dir: Path, n_images: int, n_queries: int, hw: tuple[int, int], seed: int = 0) -> None:
    H, W = hw
    rng = np.random.default_rng(seed)
    pngs = ring_pngs(256, (math.ceil(H / 4), math.ceil(W / 4)), rng)
    cats = categories(NUM_CLASSES)
    manifest = {"run": run_dir.name, "iteration": ITERATION, "phase": "semi", "config_hash": "bench",
                "dataset": "fabricated", "image_root": str(run_dir / "images"), "categories": cats,
                "thresholds": dict(PAPER_THRESHOLDS), "dicc": {"enabled": True, "w": 0.3}}
    with RecordWriter(run_dir, ITERATION, manifest) as writer:
        for first in range(0, n_images, IMAGES_PER_WRITE):
            count = min(IMAGES_PER_WRITE, n_images - first)
            table = fabricate_query_table(count * n_queries, NUM_CLASSES, seed=seed + first,
                                          queries_per_image=n_queries, image_hw=hw)
            n = table.num_rows
            image_ids = table["image_id"].to_numpy() + first + 1
            area = table["area"].to_numpy()
            side = np.clip(np.sqrt(area), 2, min(H, W) - 1).astype(np.int64)
            boxes = np.stack([rng.integers(0, W - side), rng.integers(0, H - side), side, side], axis=1)
            empty = rng.random(n) < 0.18
            rles = ellipse_rles(boxes[~empty], H, W)
            strings = np.full(n, None, dtype=object)
            strings[~empty] = rles
            full = [{"size": [H, W], "counts": s.encode("ascii")} for s in rles]
            areas = np.zeros(n, dtype=np.int64)
            bbox = np.zeros((n, 4), dtype=np.float32)
            if full:
                areas[~empty] = np.concatenate([mask_utils.area(full[i:i + 255])  # it fails on > 255 at once
                                                for i in range(0, len(full), 255)])
                bbox[~empty] = mask_utils.toBbox(full)
            empty_rle = mask_utils.frPyObjects({"size": [H, W], "counts": [H * W]}, H, W)["counts"].decode("ascii")
            strings[empty] = empty_rle
            c, m = table["c"].to_numpy(), table["m"].to_numpy()
            keep = (c >= PAPER_THRESHOLDS["c_t"]) & (m >= PAPER_THRESHOLDS["m_t"]) & ~empty
            cols = {name: table[name] for name in QUERY_SCHEMA.names}
            cols.update({
                "image_id": pa.array(image_ids.astype(np.int64)), "mask_rle": pa.array(strings.tolist(), pa.string()),
                "area": pa.array(areas), "bbox": list_array(bbox, pa.float32()), "keep_ddtf": pa.array(keep),
                "unc_png": pa.array([pngs[i] for i in rng.integers(0, len(pngs), size=n)], pa.binary()),
            })
            queries = pa.table([cols[name] for name in QUERY_SCHEMA.names], schema=QUERY_SCHEMA)
            gt_rows = []
            for image_id in range(first + 1, first + count + 1):
                sides = rng.integers(20, min(H, W) // 3, size=GT_PER_IMAGE)
                gboxes = np.stack([rng.integers(0, W - sides), rng.integers(0, H - sides), sides, sides], axis=1)
                grles = ellipse_rles(gboxes, H, W)
                rle_dicts = [{"size": [H, W], "counts": s.encode("ascii")} for s in grles]
                for k, (s, a, b) in enumerate(zip(grles, mask_utils.area(rle_dicts), mask_utils.toBbox(rle_dicts))):
                    gt_rows.append((image_id, image_id * 10 + k, int(rng.integers(NUM_CLASSES)), int(a), s, b))
            gt = pa.table({
                "image_id": pa.array([r[0] for r in gt_rows], pa.int64()),
                "gt_id": pa.array([r[1] for r in gt_rows], pa.int64()),
                "gt_class": pa.array([r[2] for r in gt_rows], pa.int16()),
                "area": pa.array([r[3] for r in gt_rows], pa.int64()),
                "mask_rle": pa.array([r[4] for r in gt_rows], pa.string()),
                "height": pa.array(np.full(len(gt_rows), H, np.int32)),
                "width": pa.array(np.full(len(gt_rows), W, np.int32)),
                "bbox": list_array(np.array([r[5] for r in gt_rows], np.float32), pa.float32()),
            })
            images = pa.concat_tables([build_image_row(i, f"{i:08d}.jpg", hw, has_gt=True)
                                       for i in range(first + 1, first + count + 1)])
            writer.add(queries, gt, images)


def child(run_dir: str, result_path: str, eval_images: int) -> None:
    """The timed part (runs in its own process, so its peak RSS is the build's)."""
    from apps.fiftyone_app.database import private_database
    from apps.fiftyone_app.export import _evaluate, build_dataset, pseudo_field
    from pldc_core.records.store import load_records

    result = {}
    with tempfile.TemporaryDirectory(prefix="bench-fo-db-") as db_dir:
        with private_database(Path(db_dir)) as (fo, mongod):
            result["rss_before_build_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            t = time.perf_counter()
            dataset = build_dataset(run_dir, name="bench", evaluate=False)
            result["build_s"] = time.perf_counter() - t
            result["rss_after_build_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            result["samples"] = len(dataset)
            result["labels"] = dataset.count(f"{pseudo_field(ITERATION)}.detections")
            names = [c["name"] for c in load_records(run_dir, ITERATION, columns=["image_id"]).manifest["categories"]]
            subset = dataset.limit(eval_images)
            result["eval_images"] = len(subset)
            result["kept_labels"] = subset.count_values(f"{pseudo_field(ITERATION)}.detections.keep_ddtf").get(True, 0)
            t = time.perf_counter()
            if eval_images:
                _evaluate(subset, ITERATION, names, "ddtf")
            result["evaluate_s"] = time.perf_counter() - t
            t = time.perf_counter()
            build_dataset(run_dir, name="bench", evaluate=False)
            result["rebuild_noop_s"] = time.perf_counter() - t
            result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            status = Path(f"/proc/{mongod.pid}/status").read_text()
            result["mongod_peak_rss_mib"] = int(next(line.split()[1] for line in status.splitlines()
                                                     if line.startswith("VmHWM"))) / 1024
            stats = fo.core.odm.database.get_db_conn().command("dbstats")
            result["db_data_mib"] = stats["dataSize"] / 2**20
            result["db_storage_mib"] = (stats["storageSize"] + stats["indexSize"]) / 2**20
    Path(result_path).write_text(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--eval-images", type=int, default=1000,
                        help="images (the first ones) to run evaluate_detections on (0: skip)")
    parser.add_argument("--out", default=None, help="append the result lines to this file")
    parser.add_argument("--child", nargs=3, metavar=("RUN", "RESULT", "EVAL_IMAGES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-fo-") as tmp:
        run_dir = Path(tmp) / "run"
        t = time.perf_counter()
        fabricate(run_dir, args.images, args.queries, (args.height, args.width))
        fab_s = time.perf_counter() - t
        records_mib = sum(f.stat().st_size for f in run_dir.rglob("*.parquet")) / 2**20
        result_path = Path(tmp) / "result.json"
        env = {**os.environ, "PLDC_NO_PROGRESS": os.environ.get("PLDC_NO_PROGRESS", "0")}
        subprocess.run([sys.executable, __file__, "--child", str(run_dir), str(result_path), str(args.eval_images)],
                       check=True, env=env)
        r = json.loads(result_path.read_text())
    n = args.images * args.queries
    lines = [
        f"# bench_fiftyone {datetime.now(timezone.utc).isoformat(timespec='seconds')}  "
        f"{platform.node()}  {os.cpu_count()} CPUs  load avg {os.getloadavg()[0]:.1f}",
        f"records: {args.images} images x {args.queries} queries = {n} queries at {args.height}x{args.width}, "
        f"{records_mib:.0f} MiB parquet (fabricated in {fab_s:.0f} s, not timed)",
        f"build (no evaluation): {r['build_s']:.1f} s = {1e3 * r['build_s'] / args.images:.2f} ms/image; "
        f"{r['samples']} samples, {r['labels']} pseudo-labels with masks",
        f"evaluate_detections (kept by DDTF, masks, mAP sweep) on the first {r['eval_images']} images: "
        f"{r['evaluate_s']:.1f} s for {r['kept_labels']} kept labels"
        + (f" = {1e3 * r['evaluate_s'] / r['eval_images']:.0f} ms/image" if r['eval_images'] else ""),
        f"second build (already up to date): {r['rebuild_noop_s']:.2f} s",
        f"peak RSS of the builder: {r['rss_before_build_mib']:.0f} MiB after imports and starting the database, "
        f"{r['rss_after_build_mib']:.0f} MiB after the build, {r['peak_rss_mib']:.0f} MiB after evaluation; "
        f"mongod {r['mongod_peak_rss_mib']:.0f} MiB",
        f"database: {r['db_data_mib']:.0f} MiB of documents, {r['db_storage_mib']:.0f} MiB on disk (compressed, "
        f"with indexes)",
    ]
    print("\n".join(lines))
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n".join(lines) + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
