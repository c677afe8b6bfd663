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


def run(args: argparse.Namespace) -> int:
    from pldc_core.data.coco import DatasetError
    from pldc_core.run_dir import RunDirError
    from pldc_core.training.loop import TrainingDiverged
    from pldc_core.training.trainer import Trainer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.resume:
            run_dir = Path(args.resume)
            cfg = load_config(RunDir(run_dir).config, args.overrides, saved=True)
        else:
            if not args.config:
                raise ConfigError("give --config FILE for a new run, or --resume RUN_DIR")
            overrides = list(args.overrides) + ([f"name={args.name}"] if args.name else [])
            cfg = load_config(args.config, overrides)
            run_dir = Path(args.run_dir) if args.run_dir else Path(cfg.output_dir) / cfg.name
        trainer = Trainer(cfg, run_dir, resume=bool(args.resume))
        best = trainer.train(stop_at=args.stop_at)
    except (ConfigError, DatasetError, FileNotFoundError, RunDirError, TrainingDiverged) as exc:
        print(f"pldc train: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if type(exc).__name__ == "DiccWeightsMissing":
            print(f"pldc train: {exc}", file=sys.stderr)
            return 1
        raise
    state = "paused" if trainer.stop_requested else "finished"
    print(f"run {state} at iteration {trainer.iter}: {run_dir} (best mask AP {best.get('AP', float('nan')):.2f} at iteration {best.get('iter')})")
    return 0
