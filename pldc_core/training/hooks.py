"""The loop's side tasks (detectron2's hooks): metrics, checkpoints, evaluation, records.

Hooks read the trainer's public attributes and call its public methods only.
"""
from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING

from pldc_core import distributed as dist_utils
from pldc_core.config import ExperimentConfig
from pldc_core.jsonl import append_json_lines, drop_lines_after
from pldc_core.training.checkpoint import save_checkpoint
from pldc_core.training.loop import HookBase
from pldc_core.units import format_metrics

if TYPE_CHECKING:
    from pldc_core.training.trainer import Trainer

log = logging.getLogger(__name__)


class MetricsLogger(HookBase):
    """One JSON line per step in RUN/metrics.jsonl, and a console progress bar with ETA."""

    def before_train(self, trainer: Trainer) -> None:
        self.path = trainer.run.metrics
        self.bar = None
        if dist_utils.is_main():
            # A run killed after its last checkpoint logged steps that the resumed run repeats.
            for path in (trainer.run.metrics, trainer.run.evals):
                drop_lines_after(path, trainer.iter)
            from tqdm import tqdm

            self.bar = tqdm(total=trainer.cfg.train.max_iters, initial=trainer.iter, desc=trainer.cfg.name,
                            dynamic_ncols=True, disable=os.environ.get("PLDC_NO_PROGRESS") == "1")

    def after_step(self, trainer: Trainer, metrics: dict) -> None:
        if not dist_utils.is_main():
            return
        append_json_lines(self.path, [metrics])
        if self.bar is not None:
            self.bar.update(1)
            if trainer.iter % trainer.cfg.train.log_every == 0 or trainer.iter == 1:
                post = {"phase": metrics["phase"], "loss": f"{metrics['loss']:.3f}"}
                if metrics.get("n_queries"):
                    post["kept"] = f"{metrics['n_kept']}/{metrics['n_queries']}"
                self.bar.set_postfix(post)

    def after_train(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()


class PeriodicHook(HookBase):
    """``fn(trainer)`` every ``period`` steps and after the last step (and, with ``on_stop``, when a
    stop was requested): detectron2's ``EvalHook(period, fn)`` / ``PeriodicCheckpointer`` shape."""

    def __init__(self, period: int, fn, *, on_stop: bool = False):
        self.period, self.fn, self.on_stop = int(period), fn, on_stop

    def after_step(self, trainer: Trainer, metrics: dict) -> None:
        if (trainer.iter % self.period == 0 or trainer.iter == trainer.max_iters
                or (self.on_stop and trainer.stop_requested)):
            self.fn(trainer)


def save(trainer: Trainer) -> None:
    """A checkpoint of the trainer's state with every rank's RNG; the status file says 'running'."""
    state = trainer.state_dict()  # every rank builds it: RNG capture is collective-free
    # Each rank draws its own augmentations: keep every rank's RNG so that a resume with the
    # same number of processes continues each one's stream ("rng" stays rank 0's).
    state["rng_per_rank"] = dist_utils.all_gather_objects(state["rng"])
    if dist_utils.is_main():
        save_checkpoint(trainer.run.path, trainer.iter, state, keep=trainer.cfg.train.keep_checkpoints)
        trainer.write_status("running")
    dist_utils.barrier()


def evaluate(trainer: Trainer) -> dict:
    """COCO mask AP of the teacher (the student during burn-in) on the val images, each class's too
    (``AP_per_class`` in ``eval.jsonl``); keeps the best."""
    from pldc_core.data.registry import eval_protocol, get_dataset
    from pldc_core.model.inference import evaluate_model

    model = trainer.labelling_model
    d = trainer.cfg.data
    ids = trainer.data.val_index.image_ids
    if d.eval_images:
        ids = ids[: d.eval_images]
    buckets, test_size = eval_protocol(d, get_dataset(d.dataset, data_root=d.data_root, registry_file=d.registry_file))
    result = evaluate_model(model, trainer.data.val_index, ids, d.image_size, trainer.device,
                            top_k=trainer.cfg.model.test_top_k, size_buckets=buckets, test_size=test_size,
                            per_class=True)
    if dist_utils.is_main():
        result = {"iter": trainer.iter, "model": "teacher" if trainer.teacher is not None else "student",
                  **result}
        append_json_lines(trainer.run.evals, [result])
        if result.get("AP", -1) > trainer.best.get("AP", -math.inf):
            trainer.best = {"AP": result["AP"], "iter": trainer.iter}
        log.info("iteration %d: mask AP of the %s on %d val images: %s", trainer.iter, result["model"], len(ids),
                 format_metrics(result))
    trainer.best = dist_utils.broadcast_object(trainer.best)
    return result


def record(trainer: Trainer) -> None:
    """The teacher's pseudo-labels on the run's record sample (``records.recorder``)."""
    from pldc_core.records.recorder import record_checkpoint

    record_checkpoint(trainer)


class RecordAtSemiStart(HookBase):
    """Records at iteration 0 of a run that is semi-supervised from its first step (started from
    burned-in weights, ``train.burn_in_iters: 0``): the pseudo-labels PL-DC's first steps train on,
    when DICC's weight is highest (docs/METHOD.md, "When DICC can act at all"). A run with a burn-in
    has its last burn-in step recorded by the periodic hook instead."""

    def before_train(self, trainer: Trainer) -> None:
        from pldc_core.records.store import list_record_iterations

        if trainer.iter != 0 or trainer.cfg.train.burn_in_iters != 0:
            return
        # one decision for every rank: recording is collective
        missing = dist_utils.broadcast_object(0 not in list_record_iterations(trainer.run.path))
        if missing:
            record(trainer)


def default_hooks(cfg: ExperimentConfig) -> list[HookBase]:
    """Metrics every step; checkpoints (also on a stop request), evaluation and, with PL-DC, the
    pseudo-label records (at every checkpoint unless ``records.every`` says otherwise, and before
    the first step of a run that starts semi-supervised)."""
    t = cfg.train
    hooks: list[HookBase] = [MetricsLogger(), PeriodicHook(t.checkpoint_every, save, on_stop=True),
                             PeriodicHook(t.eval_every, evaluate)]
    if cfg.records.enabled and cfg.pldc.enabled:
        hooks += [RecordAtSemiStart(), PeriodicHook(cfg.records.every or t.checkpoint_every, record)]
    return hooks
