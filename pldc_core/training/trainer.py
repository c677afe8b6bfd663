"""PL-DC training: burn-in on labeled data, then teacher-student mutual learning with EMA.

The loop is small (``before_step / run_step / after_step``); logging, checkpoints, evaluation
and pseudo-label records are hooks. Invariant: ``trainer.iter`` is the number of optimizer
steps taken so far; a checkpoint saved after step ``i`` stores ``iteration = i`` and a resumed
run continues at step ``i`` with the same data order and schedule.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import signal
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from pldc_core import distributed as dist_utils
from pldc_core.atomic import write_json
from pldc_core.config import ExperimentConfig, save_config
from pldc_core.model.mask2former import Mask2FormerSegmenter, build_model, ema_update, unwrap

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


class RunDirError(RuntimeError):
    """The run folder is missing, or exists already where a new run was asked for."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist_utils.local_rank())
        return torch.device("cpu")
    return torch.device(name)


@dataclass
class DataBundle:
    """Everything the loop reads: datasets, their ids, and the categories."""

    categories: object
    train_index: object
    val_index: object
    labeled_ids: list
    unlabeled_ids: list
    labeled: object
    unlabeled: object
    val_json: Path


def build_data(cfg: ExperimentConfig) -> DataBundle:
    """Load the dataset, its split and the train/eval datasets named by the config."""
    from pldc_core.data.augment import StrongPhotometric, TrainAugment
    from pldc_core.data.coco import load_coco
    from pldc_core.data.loader import LabeledDataset, UnlabeledDataset
    from pldc_core.data.registry import get_dataset
    from pldc_core.data.splits import load_split

    d = cfg.data
    spec = get_dataset(d.dataset, data_root=d.data_root, registry_file=d.registry_file)
    train_index = load_coco(spec.train_json, spec.image_root_train)
    val_index = load_coco(spec.val_json, spec.image_root_val)
    split_file = Path(d.split_file) if d.split_file else Path(d.data_root) / "splits" / f"{d.dataset}.json"
    if not split_file.is_file():
        raise FileNotFoundError(f"{split_file}: split file not found; make it with "
                                f"`pldc data split --dataset {d.dataset} --percent {d.percent:g} --seeds {d.split_seed} "
                                f"--out {split_file}` or set data.split_file")
    labeled_ids, unlabeled_ids = load_split(split_file, d.percent, d.split_seed)
    augment = TrainAugment(d.image_size, scale_range=tuple(d.scale_range))
    labeled = LabeledDataset(train_index, labeled_ids, augment)
    if d.extra_labeled_json:
        from torch.utils.data import ConcatDataset

        extra_index = load_coco(d.extra_labeled_json, spec.image_root_train)
        if extra_index.categories != train_index.categories:
            raise ValueError(f"{d.extra_labeled_json}: its categories differ from {spec.train_json}'s")
        extra_ids = [i for i in extra_index.image_ids if extra_index.annotations(i)]
        labeled = ConcatDataset([labeled, LabeledDataset(extra_index, extra_ids, augment)])
        taken = set(extra_ids)
        unlabeled_ids = [i for i in unlabeled_ids if i not in taken]
        log.info("added %d curated images from %s as labeled data", len(extra_ids), d.extra_labeled_json)
    unlabeled = UnlabeledDataset(train_index.images_only(unlabeled_ids), unlabeled_ids, augment, StrongPhotometric())
    return DataBundle(train_index.categories, train_index, val_index, list(labeled_ids), list(unlabeled_ids),
                      labeled, unlabeled, Path(spec.val_json))


class HookBase:
    """A side task of the loop. Hooks should be cheap unless their iteration has come."""

    def before_train(self, trainer: "Trainer") -> None: ...
    def after_step(self, trainer: "Trainer", metrics: dict) -> None: ...
    def after_train(self, trainer: "Trainer") -> None: ...


class Trainer:
    def __init__(self, cfg: ExperimentConfig, run_dir: str | Path, *, resume: bool = False,
                 hooks: list[HookBase] | None = None, data: DataBundle | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device = pick_device(cfg.train.device)
        dist_utils.init_from_env(self.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self._prepare_run_dir(resume)
        self.data = data or build_data(cfg)
        self.num_classes = len(self.data.categories)
        torch.manual_seed(cfg.train.seed + dist_utils.rank())

        self.student = build_model(cfg.model, self.num_classes).to(self.device)
        self.teacher: Mask2FormerSegmenter | None = None
        self.optimizer = self._build_optimizer()
        from pldc_core.losses import SetCriterion

        self.criterion = SetCriterion(self.num_classes, num_points=cfg.model.train_num_points).to(self.device)
        self.clip = self._load_clip() if (cfg.pldc.enabled and cfg.pldc.dicc) else None
        self.iter = 0
        self.best = {}
        self.stop_requested = False
        self.timings: dict[str, float] = {}
        if resume:
            self._restore()
        self.model = self.student
        if dist_utils.is_distributed():
            if self.device.type == "cuda":
                self.student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.student)
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.student, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.hooks = hooks if hooks is not None else default_hooks(cfg)

    # ----------------------------------------------------------------------------- set-up
    def _lock_run_dir(self) -> None:
        """Hold an exclusive lock on RUN/.lock for this process's life: one trainer per run folder."""
        import fcntl

        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.run_dir / ".lock", "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.seek(0)
            owner = self._lock_file.read().strip() or "unknown"
            self._lock_file.close()
            raise RunDirError(f"{self.run_dir}: another process (pid {owner}) is training this run; "
                              "stop it first (it saves a checkpoint on SIGTERM)") from None
        self._lock_file.truncate(0)
        self._lock_file.write(str(os.getpid()))
        self._lock_file.flush()

    def close(self) -> None:
        """Release the run folder's lock before this process ends (its exit does it too)."""
        lock = getattr(self, "_lock_file", None)
        if lock is not None and not lock.closed:
            lock.close()

    def _prepare_run_dir(self, resume: bool) -> None:
        if dist_utils.is_main():
            self._lock_run_dir()
        ckpts = self.run_dir / "checkpoints"
        if resume:
            if not ckpts.is_dir():
                raise RunDirError(f"{self.run_dir}: no checkpoints to resume from")
        elif ckpts.is_dir() and any(ckpts.iterdir()):
            raise RunDirError(f"{self.run_dir}: a run exists here already; resume it with "
                              f"`pldc train --resume {self.run_dir}` or choose another name (--name)")
        if dist_utils.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / "config.yaml")

    def _build_optimizer(self) -> torch.optim.Optimizer:
        t = self.cfg.train
        backbone = {id(p) for p in self.student.backbone.parameters()}
        params = [p for p in self.student.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if id(p) in backbone], "lr": t.lr * t.backbone_lr_mult},
            {"params": [p for p in params if id(p) not in backbone], "lr": t.lr},
        ]
        groups = [g for g in groups if g["params"]]
        for g in groups:
            g["base_lr"] = g["lr"]
        return torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)

    def _load_clip(self):
        from pldc_core.method.dicc import load_run_clip

        return load_run_clip(self.cfg.pldc, self.data.categories.names, self.device)

    def _amp_dtype(self) -> torch.dtype | None:
        if not (self.cfg.train.amp and self.device.type == "cuda"):
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        from pldc_core.training.checkpoint import capture_rng_state

        return {
            "student": self.student.state_dict(),
            "teacher": self.teacher.state_dict() if self.teacher is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": self.iter,
            "phase": self.phase,
            "rng": capture_rng_state(),
            "config": self.cfg.to_dict(),
            "categories": self.data.categories.to_coco(),
            "best": self.best,
        }

    def _restore(self) -> None:
        from pldc_core.training.checkpoint import load_checkpoint, restore_rng_state

        state = load_checkpoint(self.run_dir, map_location=self.device)
        self.student.load_state_dict(state["student"])
        if state.get("teacher") is not None:
            self._start_teacher()
            self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._pending_scaler = state.get("scaler")
        self.iter = int(state["iteration"])
        self.best = state.get("best", {})
        per_rank = state.get("rng_per_rank")
        if per_rank is not None and len(per_rank) == dist_utils.world_size():
            restore_rng_state(per_rank[dist_utils.rank()])
        else:
            restore_rng_state(state["rng"])
            if dist_utils.world_size() > 1:
                # rank 0's state on every rank would give all ranks the same augmentations
                torch.manual_seed(self.cfg.train.seed + 1000003 * self.iter + dist_utils.rank())
                log.warning("checkpoint saved by %s process(es), resumed with %d: the random streams "
                            "of the ranks are re-seeded, so this resume is not bit-exact",
                            len(per_rank) if per_rank is not None else "an unknown number of",
                            dist_utils.world_size())
        log.info("resumed %s at iteration %d", self.run_dir, self.iter)

    @property
    def phase(self) -> str:
        return "burn_in" if self.iter < self.cfg.train.burn_in_iters or not self.cfg.pldc.enabled else "semi"

    def _start_teacher(self) -> None:
        self.teacher = copy.deepcopy(unwrap(self.student)).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    # ----------------------------------------------------------------------------- loop
    def train(self, stop_at: int | None = None) -> dict:
        """Train to ``max_iters`` (or pause after ``stop_at`` steps, with a checkpoint); returns the best eval."""
        from pldc_core.data.loader import infinite_batches

        t, r, w = self.cfg.train, dist_utils.rank(), dist_utils.world_size()
        if getattr(self, "_pending_scaler", None):
            self.scaler.load_state_dict(self._pending_scaler)
        self._lab_iter = infinite_batches(self.data.labeled, t.batch_labeled, seed=t.seed, start_iter=self.iter,
                                          rank=r, world_size=w, num_workers=self.cfg.data.num_workers)
        self._unl_iter = None
        self._install_signal_handlers()
        self._write_status("running")
        for hook in self.hooks:
            hook.before_train(self)
        try:
            while self.iter < t.max_iters and not self.stop_requested:
                metrics = self.run_step()
                self.iter += 1
                if stop_at is not None and self.iter >= stop_at:
                    self.stop_requested = True
                for hook in self.hooks:
                    hook.after_step(self, metrics)
            for hook in self.hooks:
                hook.after_train(self)
            self._write_status("stopped" if self.stop_requested else "finished")
        except TrainingDiverged as exc:
            self._write_status("failed", error=str(exc))
            raise
        except BaseException as exc:
            self._write_status("failed", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self._restore_signal_handlers()
            self.release()
        return self.best

    def release(self) -> None:
        """Give up the run folder's lock (done when ``train`` returns or fails)."""
        lock = getattr(self, "_lock_file", None)
        if lock is not None and not lock.closed:
            lock.close()

    def _unlabeled_batches(self):
        from pldc_core.data.loader import infinite_batches

        if self._unl_iter is None:
            t = self.cfg.train
            # The unlabeled stream starts at the first semi-supervised step, so a resumed run
            # continues it where it was.
            start = self.iter - t.burn_in_iters
            self._unl_iter = infinite_batches(self.data.unlabeled, t.batch_unlabeled, seed=t.seed + 1,
                                              start_iter=start, rank=dist_utils.rank(),
                                              world_size=dist_utils.world_size(),
                                              num_workers=self.cfg.data.num_workers)
        return self._unl_iter

    def _set_lr(self) -> float:
        t = self.cfg.train
        factor = 1.0
        if t.lr_schedule == "poly":
            factor = (1 - self.iter / t.max_iters) ** 0.9
        if t.warmup_iters and self.iter < t.warmup_iters:
            factor *= (self.iter + 1) / t.warmup_iters
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * factor
        return self.optimizer.param_groups[-1]["lr"]

    @contextmanager
    def _timed(self, key: str):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - start

    def run_step(self) -> dict:
        """One optimizer step: supervised during burn-in, supervised + PL-DC afterwards."""
        start = time.perf_counter()
        self.timings = {}
        lr = self._set_lr()
        self.student.train()
        labeled = [s for s in next(self._lab_iter)]
        images_l = torch.stack([s.image for s in labeled]).to(self.device, non_blocking=True)
        targets_l = [{"labels": s.labels.to(self.device), "masks": s.masks.to(self.device).float()} for s in labeled]
        metrics = {"iter": self.iter + 1, "phase": self.phase, "lr": lr}

        if self.phase == "burn_in":
            with self._timed("student"), self._autocast():
                out = self.model(images_l)
                losses = self.criterion(out.class_logits.float(), out.mask_logits.float(), targets_l,
                                        [(c.float(), m.float()) for c, m in out.aux])
            loss = losses["loss"]
            # the pseudo-label columns exist in every line; they are empty before the teacher exists
            metrics.update(loss_sup=loss.item(), loss_unsup=0.0, n_queries=None, n_kept=None, n_kept_ddtf=None,
                           n_kept_coupled=None, n_dicc_changed=None, dicc_w=None)
        else:
            if self.teacher is None:
                self._start_teacher()
            pairs = next(self._unlabeled_batches())
            weak = torch.stack([p.weak.image for p in pairs]).to(self.device, non_blocking=True)
            strong = torch.stack([p.strong_image for p in pairs]).to(self.device, non_blocking=True)
            valid = torch.stack([p.weak.meta["valid"] for p in pairs]).to(self.device)
            targets_u, pl_stats = self.pseudo_label(weak, valid)
            metrics.update(pl_stats)
            with self._timed("student"), self._autocast():
                out = self.model(torch.cat([images_l, strong]))
            out_l, out_u = out.split(len(labeled))
            with self._timed("student"):
                sup = self.criterion(out_l.class_logits.float(), out_l.mask_logits.float(), targets_l,
                                     [(c.float(), m.float()) for c, m in out_l.aux])
            with self._timed("unsup_loss"):
                unsup = self.criterion(out_u.class_logits.float(), out_u.mask_logits.float(), targets_u,
                                       [(c.float(), m.float()) for c, m in out_u.aux])
            loss = sup["loss"] + self.cfg.train.unsup_weight * unsup["loss"]
            losses = {**{f"sup_{k}": v for k, v in sup.items()}, **{f"unsup_{k}": v for k, v in unsup.items()}}
            metrics.update(loss_sup=sup["loss"].item(), loss_unsup=unsup["loss"].item())

        if not torch.isfinite(loss):
            terms = {k: round(v.item(), 4) for k, v in losses.items() if not k[-1].isdigit()}
            last = self.run_dir / "checkpoints" / "last.json"
            raise TrainingDiverged(
                f"iteration {self.iter + 1}: the loss is {loss.item()} (terms: {terms}). The run stopped; its last "
                f"good checkpoint is kept ({last if last.exists() else 'none saved yet'}). Lower train.lr, "
                f"check the data, or resume with `pldc train --resume {self.run_dir}`.")
        with self._timed("student"):
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.cfg.train.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.student.parameters(), self.cfg.train.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        if self.teacher is not None:
            with self._timed("ema"):
                ema_update(self.teacher, self.student, self.cfg.train.ema_alpha)
        metrics["loss"] = loss.item()
        for k in ("loss_ce", "loss_mask", "loss_dice"):
            for prefix in ("", "sup_", "unsup_"):
                if prefix + k in losses:
                    metrics[prefix + k] = losses[prefix + k].item()
        metrics["sec_per_iter"] = time.perf_counter() - start
        metrics["timings"] = {k: round(v, 4) for k, v in self.timings.items()}
        return metrics

    @torch.no_grad()
    def pseudo_label(self, weak: torch.Tensor, valid: torch.Tensor) -> tuple[list[dict], dict]:
        """The teacher labels the weak view; DDTF (or the coupled filter), DICC and PMUA weights."""
        from pldc_core.method.pseudo_labels import dicc_fuse, dicc_weight, make_pseudo_targets

        p = self.cfg.pldc
        with self._timed("teacher"), self._autocast():
            t_out = self.teacher(weak)
        class_logits, mask_logits = t_out.class_logits.float(), t_out.mask_logits.float()
        small_valid = F.interpolate(valid[:, None].float(), size=mask_logits.shape[-2:], mode="nearest")[:, 0] > 0.5
        targets, n_kept, n_ddtf, n_coupled, n_changed = [], 0, 0, 0, 0
        w = dicc_weight(self.iter - self.cfg.train.burn_in_iters,
                        max(1, self.cfg.train.max_iters - self.cfg.train.burn_in_iters))
        for i in range(weak.shape[0]):
            with self._timed("filter"):
                pt = make_pseudo_targets(class_logits[i], mask_logits[i], filter=p.filter, c_t=p.c_t, m_t=p.m_t,
                                         s_t=p.s_t, valid=small_valid[i])
            labels = pt.labels
            if self.clip is not None and len(labels):
                with self._timed("dicc"):
                    full = F.interpolate(pt.masks[None], size=weak.shape[-2:], mode="bilinear")[0] > 0.5
                    clip_probs = self.clip.probs(weak[i], full)
                    _, labels = dicc_fuse(pt.probs, clip_probs.to(pt.probs), w)
                    n_changed += int((labels != pt.labels).sum())
            target = {"labels": labels.long(), "masks": pt.masks}
            if p.pmua:
                target["pixel_weights"] = 1.0 - pt.uncertainty
            targets.append(target)
            n_kept += len(labels)
            n_ddtf += int(pt.n_ddtf)
            n_coupled += int(pt.n_coupled)
        stats = {"n_queries": int(class_logits.shape[0] * class_logits.shape[1]), "n_kept": n_kept,
                 "n_kept_ddtf": n_ddtf, "n_kept_coupled": n_coupled,
                 "n_dicc_changed": n_changed if self.clip is not None else None,
                 "dicc_w": w if self.clip is not None else None}
        return targets, stats

    # ----------------------------------------------------------------------------- status
    def _install_signal_handlers(self) -> None:
        def request_stop(signum, frame):
            log.warning("signal %s: stopping after this step (a checkpoint is saved)", signum)
            self.stop_requested = True

        try:
            self._previous_sigterm = signal.signal(signal.SIGTERM, request_stop)
        except ValueError:  # not the main thread (e.g. inside a test runner thread)
            self._previous_sigterm = None

    def _restore_signal_handlers(self) -> None:
        if getattr(self, "_previous_sigterm", None) is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def _write_status(self, state: str, error: str | None = None) -> None:
        if not dist_utils.is_main():
            return
        write_json(self.run_dir / "status.json", {
            "state": state, "iteration": self.iter, "max_iters": self.cfg.train.max_iters,
            "phase": self.phase, "pid": os.getpid(), "updated": time.time(), "best": self.best, "error": error,
        })


# --------------------------------------------------------------------------------- hooks
def drop_lines_after(path: Path, iteration: int) -> None:
    """Keep only the JSON lines of ``path`` whose ``iter`` is at most ``iteration`` (atomically)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            if json.loads(line).get("iter", 0) <= iteration:
                kept.append(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    if len(kept) != len(lines):
        from pldc_core.atomic import write_text

        write_text(path, "".join(line + "\n" for line in kept))


class MetricsLogger(HookBase):
    """One JSON line per step in RUN/metrics.jsonl, and a console progress bar with ETA."""

    def before_train(self, trainer: Trainer) -> None:
        self.path = trainer.run_dir / "metrics.jsonl"
        self.bar = None
        if dist_utils.is_main():
            # A run killed after its last checkpoint logged steps that the resumed run repeats.
            for name in ("metrics.jsonl", "eval.jsonl"):
                drop_lines_after(trainer.run_dir / name, trainer.iter)
            from tqdm import tqdm

            self.bar = tqdm(total=trainer.cfg.train.max_iters, initial=trainer.iter, desc=trainer.cfg.name,
                            dynamic_ncols=True, disable=os.environ.get("PLDC_NO_PROGRESS") == "1")

    def after_step(self, trainer: Trainer, metrics: dict) -> None:
        if not dist_utils.is_main():
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(metrics) + "\n")
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


class CheckpointHook(HookBase):
    """Save every ``checkpoint_every`` steps, at the end, and when a stop was requested."""

    def after_step(self, trainer: Trainer, metrics: dict) -> None:
        t = trainer.cfg.train
        if trainer.iter % t.checkpoint_every == 0 or trainer.iter == t.max_iters or trainer.stop_requested:
            self.save(trainer)

    def save(self, trainer: Trainer) -> None:
        from pldc_core.training.checkpoint import save_checkpoint

        state = trainer.state_dict()  # every rank builds it: RNG capture is collective-free
        # Each rank draws its own augmentations: keep every rank's RNG so that a resume with the
        # same number of processes continues each one's stream ("rng" stays rank 0's).
        state["rng_per_rank"] = dist_utils.all_gather_objects(state["rng"])
        if dist_utils.is_main():
            save_checkpoint(trainer.run_dir, trainer.iter, state, keep=trainer.cfg.train.keep_checkpoints)
            trainer._write_status("running")
        dist_utils.barrier()


class EvalHook(HookBase):
    """COCO mask AP of the teacher (the student during burn-in) on the val images."""

    def after_step(self, trainer: Trainer, metrics: dict) -> None:
        t = trainer.cfg.train
        if trainer.iter % t.eval_every == 0 or trainer.iter == t.max_iters:
            self.evaluate(trainer)

    def evaluate(self, trainer: Trainer) -> dict:
        from pldc_core.model.inference import evaluate_model

        model = trainer.teacher if trainer.teacher is not None else unwrap(trainer.student)
        ids = trainer.data.val_index.image_ids
        if trainer.cfg.data.eval_images:
            ids = ids[: trainer.cfg.data.eval_images]
        result = evaluate_model(model, trainer.data.val_index, ids, trainer.cfg.data.image_size, trainer.device,
                                top_k=trainer.cfg.model.test_top_k)
        if dist_utils.is_main():
            result = {"iter": trainer.iter, "model": "teacher" if trainer.teacher is not None else "student",
                      **result}
            with open(trainer.run_dir / "eval.jsonl", "a") as f:
                f.write(json.dumps(result) + "\n")
            if result.get("AP", -1) > trainer.best.get("AP", -math.inf):
                trainer.best = {"AP": result["AP"], "iter": trainer.iter}
            log.info("iteration %d: mask AP %.2f", trainer.iter, result.get("AP", float("nan")))
        trainer.best = dist_utils.broadcast_object(trainer.best)
        return result


class RecordsHook(HookBase):
    """At every checkpoint (or every ``records.every`` steps) record the teacher's pseudo-labels."""

    def after_step(self, trainer: Trainer, metrics: dict) -> None:
        r, t = trainer.cfg.records, trainer.cfg.train
        every = r.every or t.checkpoint_every
        if trainer.iter % every == 0 or trainer.iter == t.max_iters:
            from pldc_core.records.recorder import record_checkpoint

            record_checkpoint(trainer)


def default_hooks(cfg: ExperimentConfig) -> list[HookBase]:
    hooks: list[HookBase] = [MetricsLogger(), CheckpointHook(), EvalHook()]
    if cfg.records.enabled and cfg.pldc.enabled:
        hooks.append(RecordsHook())
    return hooks
