"""`pldc eval`: COCO mask AP of a checkpoint on its dataset's val images."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a checkpoint file, or a run folder (its last checkpoint)")
    parser.add_argument("--model", choices=("teacher", "student"), default="teacher",
                        help="which weights to evaluate (teacher falls back to student during burn-in)")
    parser.add_argument("--images", type=int, help="evaluate on the first N val images only")
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    parser.add_argument("--out", help="also write the metrics (in percent, with each class's AP) to this JSON file")
    parser.add_argument("--per-class", action="store_true",
                        help="also print each class's mask AP (COCO's AP is their mean), lowest first")
    parser.add_argument("--predictions-out", metavar="FILE",
                        help="also write the predictions as a COCO results JSON (segmentation RLE, score, category_id)")


def weights_used(state: dict, which: str) -> str:
    """Which model of a checkpoint ``load_trained_model`` loads for ``which``: the teacher, or the student
    (asked for, or in place of a teacher that does not exist yet during burn-in)."""
    return "teacher" if which == "teacher" and state.get("teacher") is not None else "student"


def load_trained_model(state: dict, which: str, device: torch.device, source: str | None = None):
    """The model stored in a checkpoint state: (model, config, categories).

    ``source`` (the checkpoint's path) names the file when the state is not a training checkpoint.
    """
    from pldc_core.config import from_dict
    from pldc_core.model.mask2former import build_model
    from pldc_core.structures import Categories

    missing = [k for k in ("student", "config", "categories", "iteration") if k not in state]
    if missing:
        raise ValueError(f"{source or 'checkpoint'}: not a pldc training checkpoint (it lacks {', '.join(missing)})")
    cfg = from_dict(state["config"], saved=True)
    categories = Categories.from_coco(state["categories"])
    model = build_model(cfg.model, len(categories)).to(device)
    model.load_state_dict(state[weights_used(state, which)])
    return model.eval(), cfg, categories


def per_class_lines(ap_per_class: dict[str, float]) -> str:
    """One line per class, ``"  AP  12.34%  name"``, lowest AP first; classes without ground truth last."""
    import math

    from pldc_core.units import format_ap

    ordered = sorted(ap_per_class.items(), key=lambda kv: (math.isnan(kv[1]), kv[1]))
    width = max((len(format_ap(v)) for _, v in ordered), default=0)
    undefined = any(math.isnan(v) for v in ap_per_class.values())
    lines = ["mask AP per class, lowest first" + (" (n/a: no ground truth in these images):" if undefined else ":")]
    lines += [f"  AP {format_ap(v).rjust(width)}  {name}" for name, v in ordered]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pldc_core.atomic import write_json
    from pldc_core.messages import error_line
    from pldc_core.data.coco import DatasetError
    from pldc_core.data.registry import eval_protocol, get_dataset
    from pldc_core.distributed import pick_device
    from pldc_core.model.inference import evaluate_model
    from pldc_core.training.checkpoint import load_checkpoint
    from pldc_core.units import format_metrics

    if args.images is not None and args.images < 1:
        print(f"pldc eval: --images must be at least 1, got {args.images}", file=sys.stderr)
        return 2
    for flag, path in (("--out", args.out), ("--predictions-out", args.predictions_out)):
        if path and Path(path).is_dir():
            print(f"pldc eval: {path}: is a folder; give the JSON file to write ({flag})", file=sys.stderr)
            return 2
    try:
        state = load_checkpoint(args.checkpoint, map_location="cpu")
        device = pick_device(args.device)
        model, cfg, _ = load_trained_model(state, args.model, device, source=str(args.checkpoint))
        spec = get_dataset(cfg.data.dataset, data_root=cfg.data.data_root, registry_file=cfg.data.registry_file)
        index = spec.load_val(skip_degenerate=True)
        ids = index.image_ids[: args.images] if args.images else index.image_ids
        buckets, test_size = eval_protocol(cfg.data, spec)
        metrics = evaluate_model(model, index, ids, cfg.data.image_size, device, top_k=cfg.model.test_top_k,
                                 size_buckets=buckets, test_size=test_size, predictions_out=args.predictions_out,
                                 per_class=True)
    except (OSError, DatasetError, ValueError, KeyError) as exc:
        print(f"pldc eval: {error_line(exc)}", file=sys.stderr)
        return 1
    which = weights_used(state, args.model)
    result = {"checkpoint": str(args.checkpoint), "iteration": state["iteration"], "model": which,
              "images": len(ids), **metrics}
    print(f"mask AP of the {which} of iteration {state['iteration']} on {len(ids)} val images of "
          f"'{cfg.data.dataset}': {format_metrics(metrics)}")
    if args.per_class:
        print(per_class_lines(metrics["AP_per_class"]))
    if args.out:
        try:
            write_json(args.out, result)
        except OSError as exc:
            print(f"pldc eval: {error_line(exc)}", file=sys.stderr)
            return 1
    return 0
