"""`pldc train`: start a run from a YAML config, or resume one."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pldc_core.config import ConfigError, load_config
from pldc_core.run_dir import RunDir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="experiment YAML (e.g. configs/cpu-quick.yaml)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    parser.add_argument("--name", help="run name (default: the config's name)")
    parser.add_argument("--run-dir", help="run folder (default: <output_dir>/<name>)")
    parser.add_argument("--stop-at", type=int, metavar="ITER",
                        help="pause after this many iterations (checkpoint saved; continue with --resume)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. pldc.c_t=0.8")


def _resume_target(path: Path) -> Path:
    """The run folder ``--resume`` names; RunDirError if it is not one."""
    from pldc_core.run_dir import CONFIG_FILE, RunDirError

    if not path.is_dir():
        raise RunDirError(f"{path}: no such run folder")
    if not RunDir(path).config.is_file():
        raise RunDirError(f"{path}: not a run folder (no {CONFIG_FILE}); start a new run with --config FILE")
    return path


def run(args: argparse.Namespace) -> int:
    from pldc_core import distributed as dist_utils
    from pldc_core.data.coco import DatasetError
    from pldc_core.messages import error_line
    from pldc_core.method.dicc import DiccWeightsMissing
    from pldc_core.run_dir import RunDirError
    from pldc_core.training.checkpoint import CheckpointError
    from pldc_core.training.loop import TrainingDiverged
    from pldc_core.training.trainer import Trainer
    from pldc_core.units import format_ap

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.resume:
            run_dir = _resume_target(Path(args.resume))
            cfg = load_config(RunDir(run_dir).config, args.overrides, saved=True)
        else:
            if not args.config:
                raise ConfigError("give --config FILE for a new run, or --resume RUN_DIR")
            overrides = list(args.overrides) + ([f"name={args.name}"] if args.name else [])
            cfg = load_config(args.config, overrides)
            run_dir = Path(args.run_dir) if args.run_dir else Path(cfg.output_dir) / cfg.name
        # Bad input found while setting up (config values, data, weights, checkpoints) is one line;
        # the trainer leaves the run folder as it found it.
        trainer = Trainer(cfg, run_dir, resume=bool(args.resume))
    except (ConfigError, DatasetError, CheckpointError, OSError, RunDirError, DiccWeightsMissing, ValueError) as exc:
        print(f"pldc train: {error_line(exc)}", file=sys.stderr)
        return 1
    if dist_utils.is_main():
        print(trainer.summary(), flush=True)
    try:
        best = trainer.train(stop_at=args.stop_at)
    except (DatasetError, TrainingDiverged, OSError) as exc:
        print(f"pldc train: {error_line(exc)}", file=sys.stderr)
        return 1
    state = "paused" if trainer.stop_requested else "finished"
    ap = f"best mask AP {format_ap(best['AP'])} at iteration {best.get('iter')}" if "AP" in best \
        else "not evaluated yet"
    print(f"run {state} at iteration {trainer.iter}: {run_dir} ({ap})")
    return 0
