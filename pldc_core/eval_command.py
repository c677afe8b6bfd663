"""`pldc eval`: COCO mask AP of a checkpoint on its dataset's val images."""
from __future__ import annotations

import argparse
import sys

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a checkpoint file, or a run folder (its last checkpoint)")
    parser.add_argument("--model", choices=("teacher", "student"), default="teacher",
                        help="which weights to evaluate (teacher falls back to student during burn-in)")
    parser.add_argument("--images", type=int, help="evaluate on the first N val images only")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", help="also write the metrics to this JSON file")
    parser.add_argument("--predictions-out", metavar="FILE",
                        help="also write the predictions as a COCO results JSON (segmentation RLE, score, category_id)")


def load_trained_model(state: dict, which: str, device: torch.device):
    """The model stored in a checkpoint state: (model, config, categories)."""
    from pldc_core.config import from_dict
    from pldc_core.model.mask2former import build_model
    from pldc_core.structures import Categories

    cfg = from_dict(state["config"], saved=True)
    categories = Categories.from_coco(state["categories"])
    model = build_model(cfg.model, len(categories)).to(device)
    weights = state["teacher"] if which == "teacher" and state.get("teacher") is not None else state["student"]
    model.load_state_dict(weights)
    return model.eval(), cfg, categories


def run(args: argparse.Namespace) -> int:
    from pldc_core.atomic import write_json
    from pldc_core.data.coco import DatasetError, load_coco
    from pldc_core.data.registry import eval_protocol, get_dataset
    from pldc_core.distributed import pick_device
    from pldc_core.model.inference import evaluate_model
    from pldc_core.training.checkpoint import load_checkpoint

    device = pick_device(args.device)
    try:
        state = load_checkpoint(args.checkpoint, map_location="cpu")
        model, cfg, _ = load_trained_model(state, args.model, device)
        spec = get_dataset(cfg.data.dataset, data_root=cfg.data.data_root, registry_file=cfg.data.registry_file)
        index = load_coco(spec.val_json, spec.image_root_val, skip_degenerate=True)
    except (FileNotFoundError, DatasetError, ValueError, KeyError) as exc:
        print(f"pldc eval: {exc}", file=sys.stderr)
        return 1
    ids = index.image_ids[: args.images] if args.images else index.image_ids
    buckets, test_size = eval_protocol(cfg.data, spec)
    metrics = evaluate_model(model, index, ids, cfg.data.image_size, device, top_k=cfg.model.test_top_k,
                             size_buckets=buckets, test_size=test_size, predictions_out=args.predictions_out)
    result = {"checkpoint": str(args.checkpoint), "iteration": state["iteration"], "model": args.model,
              "images": len(ids), **metrics}
    print("  ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    if args.out:
        write_json(args.out, result)
    return 0
