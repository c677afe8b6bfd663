"""`pldc pseudo-labels`: record a checkpoint's pseudo-labels on demand (also on a folder of your own images)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a checkpoint file, or a run folder (its last checkpoint)")
    parser.add_argument("--images", type=int, help="how many images to record (default: the run's records.num_images)")
    parser.add_argument("--image-dir", help="record on these images instead (your own unlabeled data, no annotations)")
    parser.add_argument("--run-dir", help="where to write records (default: the checkpoint's run folder)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace records the run folder already holds for this checkpoint's iteration")
    parser.add_argument("--model", choices=("teacher", "student"), default="teacher")
    parser.add_argument("--seed", type=int, help="sample seed (default: the run's records.seed)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dicc", action="store_true",
                        help="also run DICC on the kept queries, as training does (needs CLIP weights)")
    parser.add_argument("--clip-weights", help="CLIP checkpoint for --dicc (default: the run's pldc.clip_weights)")
    parser.add_argument("--teacher-flip", action="store_true",
                        help="the teacher also labels each image's mirror and the two views are averaged, as "
                             "pldc.teacher_flip does (default: the run's setting)")
    parser.add_argument("--dicc-w", type=float,
                        help="Eq. 8's weight w for --dicc, in [0, 1] (default: training's w at the checkpoint)")


def image_folder_index(folder: Path, categories, out_json: Path):
    """A CocoIndex over the images of ``folder`` with no annotations at all (GT-free records)."""
    from PIL import Image

    from pldc_core.atomic import write_json
    from pldc_core.data.coco import DatasetError, load_coco

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    images = []
    for i, path in enumerate(files, start=1):
        try:
            with Image.open(path) as im:
                width, height = im.size
        except OSError as exc:
            raise DatasetError(f"{path}: not a readable image ({exc})") from None
        images.append({"id": i, "file_name": str(path.relative_to(folder)), "height": height, "width": width})
    write_json(out_json, {"images": images, "annotations": [], "categories": categories.to_coco()})
    return load_coco(out_json, folder)


def run(args: argparse.Namespace) -> int:
    from pldc_core.data.coco import DatasetError
    from pldc_core.data.registry import get_dataset, split_file_of
    from pldc_core.data.splits import load_split
    from pldc_core.distributed import pick_device
    from pldc_core.eval_command import load_trained_model
    from pldc_core.method.dicc import CLI_HOW_TO_SUPPLY, DiccWeightsMissing, load_run_clip
    from pldc_core.method.filters import Thresholds
    from pldc_core.method.teacher_step import dicc_w_at
    from pldc_core.records.recorder import record_pseudo_labels, sample_record_images
    from pldc_core.records.store import list_record_iterations, records_dir
    from pldc_core.training.checkpoint import load_checkpoint

    if (args.clip_weights or args.dicc_w is not None) and not args.dicc:
        print("pldc pseudo-labels: --clip-weights and --dicc-w need --dicc", file=sys.stderr)
        return 2
    if args.dicc_w is not None and not 0.0 <= args.dicc_w <= 1.0:
        print(f"pldc pseudo-labels: --dicc-w must be in [0, 1], got {args.dicc_w}", file=sys.stderr)
        return 2
    if args.images is not None and args.images < 1:
        print(f"pldc pseudo-labels: --images must be at least 1, got {args.images}", file=sys.stderr)
        return 2
    try:
        device = pick_device(args.device)
        state = load_checkpoint(args.checkpoint, map_location="cpu")
        ckpt = Path(args.checkpoint)
        run_dir = Path(args.run_dir) if args.run_dir else (ckpt if ckpt.is_dir() else ckpt.parent.parent)
        iteration = int(state["iteration"])
        if iteration in list_record_iterations(run_dir) and not args.overwrite:
            print(f"pldc pseudo-labels: {records_dir(run_dir, iteration)} already holds records of iteration "
                  f"{iteration} (from training or an earlier pldc pseudo-labels); write elsewhere with "
                  f"--run-dir DIR, or replace them with --overwrite", file=sys.stderr)
            return 1
        model, cfg, categories = load_trained_model(state, args.model, device, source=str(args.checkpoint))
        if args.image_dir:
            folder = Path(args.image_dir)
            index = image_folder_index(folder, categories, run_dir / "own_images.json")
            candidates = index.image_ids
        else:
            d = cfg.data
            spec = get_dataset(d.dataset, data_root=d.data_root, registry_file=d.registry_file)
            index = spec.load_train(skip_degenerate=True)
            candidates = load_split(split_file_of(d), d.percent, d.split_seed)[1]
        clip = load_run_clip(cfg.pldc, categories.names, device, weights=args.clip_weights) if args.dicc else None
    except DiccWeightsMissing as exc:
        print(f"pldc pseudo-labels: {exc.problem}\n  {CLI_HOW_TO_SUPPLY}; or leave out --dicc", file=sys.stderr)
        return 1
    except (FileNotFoundError, DatasetError, ValueError, KeyError) as exc:
        print(f"pldc pseudo-labels: {exc}", file=sys.stderr)
        return 1
    n = args.images or cfg.records.num_images
    ids = sample_record_images(candidates, n, cfg.records.seed if args.seed is None else args.seed)
    manifest = {"run": cfg.name, "phase": state.get("phase", "semi"), "config_hash": cfg.hash(),
                "dataset": str(args.image_dir) if args.image_dir else cfg.data.dataset}
    w = None
    if clip is not None:
        w = args.dicc_w if args.dicc_w is not None else dicc_w_at(cfg, iteration)
    path = record_pseudo_labels(model, index, ids, run_dir=run_dir, iteration=iteration,
                                manifest=manifest, image_size=cfg.data.image_size, device=device,
                                thresholds=Thresholds.of_config(cfg.pldc).as_dict(),
                                clip=clip, dicc_w=w, teacher_flip=args.teacher_flip or cfg.pldc.teacher_flip)
    dicc = f", DICC with w = {w:.3f}" if clip is not None else ""
    print(f"recorded {len(ids)} images x {cfg.model.num_queries} queries{dicc} -> {path}")
    return 0
