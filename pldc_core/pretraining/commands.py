"""`pldc pretrain ...`: remake the embedded upstream weights shipped in ``weights/``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pldc_core.data.coco import DatasetError
from pldc_core.messages import error_line


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _at_least_zero(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pretrain_command", metavar="WHAT", required=True)
    p = sub.add_parser("backbone", help="dense shape classification of upstream scenes -> ResNet weights")
    p.add_argument("--dataset", default="upstream", help="training data (default: %(default)s)")
    p.add_argument("--data-root", default="data", help="folder of the built-in datasets (default: %(default)s)")
    p.add_argument("--registry", default=None, help="YAML file of registered datasets")
    p.add_argument("--out", default="weights/upstream-backbone-tiny.pt", help="output (default: %(default)s)")
    p.add_argument("--backbone", default="tiny", help="ResNet variant (default: %(default)s)")
    p.add_argument("--steps", type=_at_least_one, default=3000, help="optimizer steps (default: %(default)s)")
    p.add_argument("--batch-size", type=_at_least_one, default=16)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--lr", type=_positive, default=1.5e-3)
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("clip", help="a small CLIP on upstream instance crops and captions -> DICC's CLIP")
    p.add_argument("--dataset", default="upstream", help="training data, with captions (default: %(default)s)")
    p.add_argument("--data-root", default="data", help="folder of the built-in datasets (default: %(default)s)")
    p.add_argument("--registry", default=None, help="YAML file of registered datasets")
    p.add_argument("--out", default="weights/upstream-clip.pt", help="weights (default: %(default)s)")
    p.add_argument("--config-out", default="weights/upstream-clip.json",
                   help="the model's open_clip config (default: %(default)s)")
    p.add_argument("--epochs", type=_at_least_one, default=30)
    p.add_argument("--batch-size", type=_at_least_one, default=256)
    p.add_argument("--image-size", type=int, default=128, help="the detector's scale (default: %(default)s)")
    p.add_argument("--lr", type=_positive, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noisy-copies", type=_at_least_zero, default=0,
                   help="extra crops per instance along a coarsened mask, as a detector predicts it (default: 0)")

    p = sub.add_parser("export", help="a run's model weights as a file for model.init_weights")
    p.add_argument("run", help="run folder (its last checkpoint) or a checkpoint file")
    p.add_argument("--out", required=True, help="output .pt (half precision)")
    p.add_argument("--model", choices=("teacher", "student"), default="teacher",
                   help="which model of the checkpoint (default: %(default)s; the student when there is no teacher)")


def run(args) -> int:
    try:
        if args.pretrain_command == "backbone":
            return _backbone(args)
        if args.pretrain_command == "clip":
            return _clip(args)
        if args.pretrain_command == "export":
            return _export(args)
    except (DatasetError, ValueError, OSError, FloatingPointError) as exc:
        print(f"pldc pretrain {args.pretrain_command}: error: {error_line(exc)}", file=sys.stderr)
        return 1
    return 2


def _backbone(args) -> int:
    from pldc_core.data.registry import get_dataset
    from pldc_core.pretraining.backbone import BackbonePretrainConfig, pretrain_backbone

    spec = get_dataset(args.dataset, data_root=args.data_root, registry_file=args.registry)
    index = spec.load_train()
    cfg = BackbonePretrainConfig(backbone=args.backbone, image_size=args.image_size, steps=args.steps,
                                 batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    result = pretrain_backbone(index, args.out, cfg, progress=os.environ.get("PLDC_NO_PROGRESS") != "1")
    print(f"wrote {args.out}: {result['steps']} steps in {result['seconds'] / 60:.1f} min, "
          f"last loss {result['last_loss']:.3f}, instance accuracy of the stride-16 head on the last batch "
          f"{100 * result['last_instance_accuracy']:.1f}%")
    return 0


def _clip(args) -> int:
    from pldc_core.data.registry import get_dataset
    from pldc_core.pretraining.clip import ClipPretrainConfig, pretrain_clip

    spec = get_dataset(args.dataset, data_root=args.data_root, registry_file=args.registry)
    index = spec.load_train()
    cfg = ClipPretrainConfig(image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, seed=args.seed, noisy_copies=args.noisy_copies)
    config_out = Path(args.config_out)
    config_existed, folder_existed = config_out.exists(), config_out.parent.exists()
    try:
        result = pretrain_clip(index, args.out, args.config_out, cfg,
                               progress=os.environ.get("PLDC_NO_PROGRESS") != "1")
    except BaseException:
        # the config is written first, for open_clip to build the model from: it is not left behind alone
        if not config_existed:
            config_out.unlink(missing_ok=True)
        if not folder_existed and config_out.parent.is_dir() and not any(config_out.parent.iterdir()):
            config_out.parent.rmdir()
        raise
    print(f"wrote {args.out} and {args.config_out}: {result['crops']} crops, {result['steps']} steps in "
          f"{result['seconds'] / 60:.1f} min, last loss {result['last_loss']:.3f}")
    return 0


def _export(args) -> int:
    from pldc_core.pretraining.backbone import save_atomic
    from pldc_core.training.checkpoint import load_checkpoint

    state = load_checkpoint(args.run)  # a CheckpointError (a ValueError) names the file
    if "student" not in state:
        raise ValueError(f"{args.run}: not a pldc checkpoint (it holds no student model)")
    model = state.get(args.model) or state["student"]
    save_atomic(Path(args.out), {k: v.half() if v.is_floating_point() else v for k, v in model.items()})
    print(f"wrote {args.out}: {len(model)} tensors of iteration {state.get('iteration', '?')} "
          f"({'teacher' if state.get(args.model) is not None and args.model == 'teacher' else 'student'})")
    return 0
