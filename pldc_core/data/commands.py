"""`pldc data ...`: make the embedded dataset, splits, validate / convert / summarise datasets."""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from pldc_core import atomic
from pldc_core.data.cityscapes import convert_cityscapes
from pldc_core.data.coco import (DatasetError, read_coco_json, read_image_ids, summarize_problems,
                                 validate_coco)
from pldc_core.data.registry import cityscapes_json, default_split_file, get_dataset
from pldc_core.data.splits import percent_key, write_splits
from pldc_core.data.synthetic import dataset_stats, generate_synthetic, render_preview
from pldc_core.messages import error_line

DEFAULT_PERCENTS = (1, 2, 5, 10)
DEFAULT_SEEDS = (0, 1, 2)


def _dataset_args(p: argparse.ArgumentParser, default: str | None = "synthetic") -> None:
    p.add_argument("--dataset", default=default, help="built-in or registered dataset name (default: %(default)s)")
    p.add_argument("--data-root", default="data", help="folder the built-in datasets live under (default: data)")
    p.add_argument("--registry", default=None, help="dataset registry YAML (default: DATA_ROOT/datasets.yaml)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = sub.add_parser("make-synthetic", help="generate the embedded dataset and its default splits")
    p.add_argument("--out", default="data/synthetic", help="output folder, replaced as a whole (default: %(default)s)")
    p.add_argument("--train", type=int, default=2000, help="training images (default: %(default)s)")
    p.add_argument("--val", type=int, default=500, help="validation images (default: %(default)s)")
    p.add_argument("--min-size", type=int, default=128, help="smallest image side in pixels (default: %(default)s)")
    p.add_argument("--max-size", type=int, default=160, help="largest image side in pixels (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU)")
    p.add_argument("--splits-out", default=None,
                   help="split file (default: OUT/../splits/<OUT name>.json, i.e. data/splits/synthetic.json)")
    p.add_argument("--percent", type=float, nargs="+", default=list(DEFAULT_PERCENTS))
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))

    p = sub.add_parser("make-upstream", help="generate the upstream corpus the embedded pretrained weights come from")
    p.add_argument("--out", default="data/upstream", help="output folder, replaced as a whole (default: %(default)s)")
    p.add_argument("--train", type=int, default=6000, help="training images (default: %(default)s)")
    p.add_argument("--val", type=int, default=500, help="validation images (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU)")

    p = sub.add_parser("split", help="write semi-supervised labeled/unlabeled splits of a training set")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="built-in or registered dataset name (its train JSON is split)")
    source.add_argument("--json", help="a COCO annotation file to split")
    p.add_argument("--data-root", default="data",
                   help="folder the built-in datasets live under; the default --out is under it (default: data)")
    p.add_argument("--registry", default=None,
                   help="dataset registry YAML that names --dataset (default: DATA_ROOT/datasets.yaml)")
    p.add_argument("--percent", type=float, nargs="+", default=list(DEFAULT_PERCENTS),
                   help="labeled percentages (default: 1 2 5 10)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS), help="seeds / folds (default: 0 1 2)")
    p.add_argument("--out", default=None, help="split file (default: DATA_ROOT/splits/<name>.json)")

    p = sub.add_parser("convert-cityscapes", help="Cityscapes gtFine polygons -> COCO instances (8 thing classes)")
    p.add_argument("root", help="folder holding leftImg8bit/ and gtFine/")
    p.add_argument("--split", default="train", help="train, val or test (default: train)")
    p.add_argument("--out", default=None,
                   help="COCO JSON (default: ROOT/annotations/instancesonly_filtered_gtFine_<split>.json)")

    p = sub.add_parser("validate", help="check a COCO dataset and list every problem found")
    p.add_argument("--json", help="COCO annotation file")
    p.add_argument("--images", help="folder the file names are relative to")
    _dataset_args(p, default=None)
    p.add_argument("--split", choices=("train", "val"), default="train", help="with --dataset (default: train)")
    p.add_argument("--no-image-check", action="store_true",
                   help="do not open the image files to compare their size with the JSON")

    p = sub.add_parser("summary", help="print the measured statistics of a dataset")
    _dataset_args(p)
    p.add_argument("--split", choices=("train", "val", "both"), default="both")
    p.add_argument("--json-out", default=None, help="also write the statistics as JSON")

    p = sub.add_parser("preview", help="draw a grid of images with their instance masks and class names")
    _dataset_args(p)
    p.add_argument("--split", choices=("train", "val"), default="val")
    p.add_argument("--num", type=int, default=6, help="images (default: %(default)s)")
    p.add_argument("--cols", type=int, default=2, help="image pairs per row (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="which images are drawn (default: %(default)s)")
    p.add_argument("--out", default="docs/images/synthetic_samples.png")


def run(args: argparse.Namespace) -> int:
    handlers = {"make-synthetic": _make_synthetic, "make-upstream": _make_upstream, "split": _split, "convert-cityscapes": _convert_cityscapes,
                "validate": _validate, "summary": _summary, "preview": _preview}
    try:
        return handlers[args.data_command](args)
    except (DatasetError, ValueError, OSError) as exc:
        print(f"pldc data {args.data_command}: error: {error_line(exc)}", file=sys.stderr)
        return 1


def _make_upstream(args) -> int:
    from pldc_core.data.upstream import generate_upstream

    stats = generate_upstream(args.out, n_train=args.train, n_val=args.val, seed=args.seed, workers=args.workers)
    print(f"wrote {args.out}: {stats['train']['images']} train / {stats['val']['images']} val images, "
          f"{stats['train']['instances']} / {stats['val']['instances']} captioned instances "
          f"in {stats['seconds']:.1f} s with {stats['workers']} worker(s)")
    return 0


def _make_synthetic(args) -> int:
    out = Path(args.out)
    for percent in args.percent:  # checked before minutes of generation, not after
        percent_key(percent)
    stats = generate_synthetic(out, n_train=args.train, n_val=args.val, min_size=args.min_size,
                               max_size=args.max_size, seed=args.seed, workers=args.workers)
    print(f"wrote {out}: {stats['train']['images']} train / {stats['val']['images']} val images, "
          f"{stats['train']['instances']} / {stats['val']['instances']} instances "
          f"in {stats['seconds']:.1f} s with {stats['workers']} worker(s)")
    dropped = stats["train"]["dropped_instances"] + stats["val"]["dropped_instances"]
    if dropped:
        print(f"  {dropped} planned instance(s) found no free place and were left out")
    splits_out = Path(args.splits_out) if args.splits_out else default_split_file(out.name, out.parent)
    ids = read_image_ids(out / "annotations" / "instances_train.json")
    write_splits(splits_out, ids, args.percent, args.seeds, dataset=out.name)
    print(f"wrote {splits_out}: percents {', '.join(f'{p:g}' for p in args.percent)} x seeds "
          f"{', '.join(map(str, args.seeds))}")
    return 0


def _split(args) -> int:
    if args.dataset:
        spec = get_dataset(args.dataset, args.data_root, args.registry)
        json_path, name = spec.train_json, spec.name
        out = Path(args.out) if args.out else default_split_file(name, args.data_root)
    else:
        json_path, name = Path(args.json), Path(args.json).stem
        out = Path(args.out) if args.out else default_split_file(name, args.data_root)
    ids = read_image_ids(json_path)
    content = write_splits(out, ids, args.percent, args.seeds, dataset=name)
    print(f"wrote {out} ({len(ids)} images of {json_path})")
    for key, by_seed in content["splits"].items():
        entry = next(iter(by_seed.values()))
        print(f"  {key:>5}%: {len(entry['labeled'])} labeled / {len(entry['unlabeled'])} unlabeled, "
              f"seeds {', '.join(by_seed)}")
    return 0


def _convert_cityscapes(args) -> int:
    out = Path(args.out) if args.out else cityscapes_json(args.root, args.split)
    stats = convert_cityscapes(args.root, args.split, out)
    print(f"wrote {out}: {stats['images']} images, {stats['instances']} instances "
          f"({', '.join(f'{k} {v}' for k, v in stats['per_class'].items())})")
    print(f"  groups seen (not instances): {stats['groups']}; fully occluded instances dropped: "
          f"{stats['fully_occluded']}")
    return 0


def _check_image_headers(data: dict, image_root: Path) -> list[str]:
    problems = []
    for img in data["images"]:
        path = image_root / str(img.get("file_name", ""))
        if not path.is_file():
            continue  # reported by validate_coco
        try:
            with Image.open(path) as im:
                width, height = im.size
        except (OSError, UnidentifiedImageError) as exc:
            problems.append(f"image id {img.get('id')}: {path} cannot be read ({exc})")
            continue
        if (height, width) != (img.get("height"), img.get("width")):
            problems.append(f"image id {img.get('id')}: {path} is {height}x{width}, the JSON says "
                            f"{img.get('height')}x{img.get('width')}")
    return problems


def _validate(args) -> int:
    if args.dataset:
        spec = get_dataset(args.dataset, args.data_root, args.registry)
        json_path, images = (spec.train_json, spec.image_root_train) if args.split == "train" \
            else (spec.val_json, spec.image_root_val)
        if json_path is None:
            raise DatasetError(f"dataset '{spec.name}' has no validation set registered")
    elif args.json and args.images:
        json_path, images = Path(args.json), Path(args.images)
    else:
        raise ValueError("give --json FILE --images DIR, or --dataset NAME")
    data = read_coco_json(json_path)
    problems, _ = validate_coco(data, images)
    header_problems = [] if args.no_image_check or not Path(images).is_dir() else _check_image_headers(data, Path(images))
    print(f"{json_path}: {len(data['images'])} images, {len(data['annotations'])} annotations, "
          f"{len(data['categories'])} categories")
    if not problems and not header_problems:
        print("no problems found")
        return 0
    for line in summarize_problems(problems):
        print(f"  {line}")
    if header_problems:
        print(f"  image_file: {len(header_problems)} (one entry) — e.g. {header_problems[0]}")
    local = sum(p.skippable for p in problems)
    print(f"{len(problems) + len(header_problems)} problem(s): {len(problems) - local} in the file's structure, "
          f"{local + len(header_problems)} in single annotations or images. Training stops at any of them: fix "
          f"those entries in {json_path} (or delete them), then run this check again")
    return 1


def format_stats(title: str, stats: dict) -> str:
    """Human-readable ``dataset_stats`` output."""
    ipi = stats["instances_per_image"]
    lines = [f"{title}: {stats['num_images']} images, {stats['num_instances']} instances "
             f"({ipi['mean']:.2f} per image, {ipi['min']}-{ipi['max']}), {stats['num_categories']} categories "
             f"in {len(stats['supercategories'])} supercategories"]
    super_of = {n: s for s, names in stats["supercategories"].items() for n in names}
    lines.append(f"  {'class':<18}{'supercategory':<15}{'instances':>10}{'share':>8}")
    for name, count in sorted(stats["class_counts"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  {name:<18}{super_of[name]:<15}{count:>10}{100 * stats['class_shares'][name]:>7.1f}%")
    if stats["commonest"]:
        lines.append(f"  commonest: {stats['commonest'][0]} {100 * stats['commonest'][1]:.1f}%; "
                     f"rarest: {stats['rarest'][0]} {100 * stats['rarest'][1]:.1f}%")
    sizes = stats["size_fractions"]
    lines.append("  sizes (COCO limits scaled to each image): "
                 + ", ".join(f"{k} {100 * v:.1f}%" for k, v in sizes.items()))
    lines.append(f"  images with overlapping or touching instances: {100 * stats['overlap_fraction']:.1f}%")
    pairs = stats["lookalike_pairs"]
    lines.append("  look-alike pairs (mutually nearest shapes, best-rotation mask IoU >= 0.85): "
                 + ("; ".join(f"{p['classes'][0]} ~ {p['classes'][1]} (IoU {p['iou']:.2f}"
                              f"{', same supercategory' if p['same_supercategory'] else ''})" for p in pairs)
                    if pairs else "none"))
    return "\n".join(lines)


def _summary(args) -> int:
    spec = get_dataset(args.dataset, args.data_root, args.registry)
    splits = ("train", "val") if args.split == "both" else (args.split,)
    everything = {}
    for split in splits:
        index = spec.load_train() if split == "train" else spec.load_val()
        everything[split] = dataset_stats(index, progress=True)
        print(format_stats(f"{spec.name} {split}", everything[split]))
    if args.json_out:
        atomic.write_text(args.json_out, json.dumps(everything, indent=2))
        print(f"wrote {args.json_out}")
    return 0


def _preview(args) -> int:
    spec = get_dataset(args.dataset, args.data_root, args.registry)
    index = spec.load_train() if args.split == "train" else spec.load_val()
    ids = sorted(random.Random(args.seed).sample(index.image_ids, min(args.num, len(index.image_ids))))
    out = render_preview(index, ids, args.out, cols=args.cols)
    print(f"wrote {out} ({len(ids)} images of {spec.name} {args.split})")
    return 0
