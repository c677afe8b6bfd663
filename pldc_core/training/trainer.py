"""PL-DC training (Fig. 4): burn-in on labeled data, then teacher-student mutual learning with EMA.

``Trainer`` builds the student, optimizer and criterion from the config and implements one step;
the loop, stop requests and status are ``loop.TrainerBase``'s, the side tasks ``hooks``', the
run folder's layout and lock ``run_dir.RunDir``'s, the pseudo-labels ``method.teacher_step``'s.
A checkpoint saved after step ``i`` stores ``iteration = i`` and a resumed run continues at step
``i`` with the same data order and schedule.
"""
from __future__ import annotations

import bisect
import copy
import datetime
import logging
import platform
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from pldc_core import distributed as dist_utils
from pldc_core.config import ExperimentConfig, save_config
from pldc_core.jsonl import append_json_lines, drop_lines_after
from pldc_core.losses import SetCriterion
from pldc_core.method.filters import Thresholds
from pldc_core.method.pseudo_labels import uncertain_queries
from pldc_core.method.teacher_step import dicc_w_at, teacher_step
from pldc_core.model.mask2former import Mask2FormerSegmenter, build_model, ema_update, unwrap
from pldc_core.run_dir import RunDir, RunDirError, RunFootprint
from pldc_core.training.checkpoint import POINTER
from pldc_core.training.data import DataBundle, build_data
from pldc_core.training.hooks import default_hooks
from pldc_core.training.loop import HookBase, TrainerBase, TrainingDiverged

log = logging.getLogger(__name__)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where autocast to it pays."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def _cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_amp_dtype(amp_cpu: bool | str) -> torch.dtype | None:
    """The autocast dtype ``train.amp_cpu`` gives on this CPU: bfloat16 for ``true``, and for ``auto``
    where the CPU computes it natively; None (float32) otherwise."""
    if not amp_cpu or (amp_cpu == "auto" and not cpu_has_native_bf16()):
        return None
    return torch.bfloat16


class Trainer(TrainerBase):
    """The student, its teacher, optimizer and criterion, and one training step of PL-DC."""

    def __init__(self, cfg: ExperimentConfig, run_dir: str | Path, *, resume: bool = False,
                 hooks: list[HookBase] | None = None, data: DataBundle | None = None):
        """Set up a new run in ``run_dir`` or, with ``resume``, the run there from its last checkpoint.

        If the set-up fails, the run folder is left as it was found (a new one is not left behind).
        """
        self.cfg = cfg
        self.run = RunDir(run_dir)
        self.resume = resume
        self._footprint = RunFootprint.of(self.run.path) if dist_utils.is_main() else None
        try:
            self._set_up(resume, hooks, data)
        except BaseException:
            self._discard_failed_start()
            raise

    def _set_up(self, resume: bool, hooks: list[HookBase] | None, data: DataBundle | None) -> None:
        cfg = self.cfg
        self.max_iters = cfg.train.max_iters
        self.device = dist_utils.pick_device(cfg.train.device)
        dist_utils.init_from_env(self.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self._prepare_run_dir(resume)
        t = cfg.train
        # this process's share of the batch sizes; checked before anything is built
        self.batch_labeled = dist_utils.batch_share(t.batch_labeled, t.batch_scope, "train.batch_labeled")
        self.batch_unlabeled = dist_utils.batch_share(t.batch_unlabeled, t.batch_scope, "train.batch_unlabeled")
        self.batch_labeled_semi = self.batch_labeled if t.semi_batch_labeled is None else \
            dist_utils.batch_share(t.semi_batch_labeled, t.batch_scope, "train.semi_batch_labeled")
        self.data = data or build_data(cfg)
        self.num_classes = len(self.data.categories)
        torch.manual_seed(cfg.train.seed + dist_utils.rank())

        self.student = build_model(cfg.model, self.num_classes).to(self.device)
        self.teacher: Mask2FormerSegmenter | None = None
        self.optimizer = self._build_optimizer()
        self.criterion = SetCriterion(self.num_classes, num_points=cfg.model.train_num_points).to(self.device)
        self.thresholds = Thresholds.of_config(cfg.pldc)
        self.clip = self._load_clip() if cfg.pldc.enabled else None
        self.iter = 0
        self.best = {}
        self.stop_requested = False
        self.timings: dict[str, float] = {}
        self._pending_scaler = None
        self._lab_iter = self._unl_iter = None
        self._lab_size = 0
        if resume:
            self._restore()
            if dist_utils.is_main():
                save_config(self.cfg, self.run.config)  # with this resume's overrides, once it can go ahead
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

    def summary(self) -> str:
        """What this run trains, on what data, where it goes: the lines ``pldc train`` prints before the first step."""
        from pldc_core.method.dicc import run_dicc_mode

        c, d, t, p, m = self.cfg, self.cfg.data, self.cfg.train, self.cfg.pldc, self.cfg.model
        start = (f"run '{c.name}' resumed at iteration {self.iter}" if self.resume else f"new run '{c.name}'")
        unlabeled = f" + {len(self.data.unlabeled_ids)} unlabeled" if p.enabled else ""
        backbone = "tiny ResNet" if m.backbone == "tiny" else m.backbone.replace("resnet", "ResNet-")
        weights = f" from {m.init_weights or m.backbone_weights}" if (m.init_weights or m.backbone_weights) else \
            " from scratch"
        if p.enabled:
            method = (f"{t.burn_in_iters} supervised burn-in steps, then {t.max_iters - t.burn_in_iters} PL-DC steps "
                      + ("(teacher on each image and its mirror, averaged; " if p.teacher_flip else "(")
                      + (f"COUPLED s_t {p.s_t:g}" if p.filter == "coupled" else f"DDTF c_t {p.c_t:g} / m_t {p.m_t:g}")
                      + (f", DICC ({run_dicc_mode(p)}) with {p.clip_weights}"
                         + ("; where CLIP names another class, either class is taught" if p.dicc_partial else "")
                         if self.clip is not None else
                         ", DICC off: the CLIP does not know every class name" if p.dicc else ", no DICC")
                      + (", PMUA" if p.pmua else ", no PMUA")
                      + (f", ignore targets from c >= {p.ignore_c:g})" if p.ignore_c is not None else ")"))
            if t.semi_batch_labeled is not None and t.semi_batch_labeled != t.batch_labeled:
                method += (f"; {t.batch_labeled} labeled images per burn-in step, {t.semi_batch_labeled} labeled + "
                           f"{t.batch_unlabeled} unlabeled per PL-DC step")
        else:
            method = f"{t.max_iters} supervised steps (pldc.enabled=false)"
        if t.ema_from_start:
            since = ("from the first step" if self.iter == 0 else "kept" if self.teacher is not None else
                     f"from iteration {self.iter} on (the checkpoint has none)")
            method += f"; EMA model (alpha {t.ema_alpha:g}) {since}, evaluated as the teacher"
            if t.student_from_ema and p.enabled:
                method += f"; the student starts PL-DC from it (iteration {t.burn_in_iters})"
        if self.amp_dtype is not None:
            method += f"; {str(self.amp_dtype).removeprefix('torch.')} autocast on the {self.device.type.upper()}"
        elif self.device.type == "cpu" and t.amp_cpu == "auto":
            method += "; float32 (train.amp_cpu auto: this CPU has no native bfloat16)"
        schedule = {"poly": "poly decay", "constant": "constant",
                    "step": f"x{t.lr_gamma:g} at {', '.join(str(i) for i in t.lr_steps)}"}[t.lr_schedule]
        method += (f"; lr {t.lr:g} ({schedule}"
                   + (f", {t.warmup_iters} warm-up steps" if t.warmup_iters else "") + ")")
        evaluated = f"the first {d.eval_images}" if d.eval_images and d.eval_images < len(self.data.val_index) else "all"
        return "\n".join([
            f"pldc train: {start} in {self.run.path} on {self.device}",
            f"  model: Mask2Former, {backbone} backbone{weights}, {m.num_queries} queries, "
            f"{d.image_size} px crops" + (", final masks at stride 2" if m.mask_stride == 2 else ""),
            f"  steps: {t.max_iters}: {method}; checkpoint every {t.checkpoint_every}, "
            f"mask AP every {t.eval_every} on {evaluated} val images",
            f"  data: '{d.dataset}' ({self.data.train_index.json_path}): {len(self.data.labeled_ids)} labeled"
            f"{unlabeled} train images ({d.percent:g}% split, seed {d.split_seed}), {len(self.data.val_index)} val images",
        ])

    # ----------------------------------------------------------------------------- set-up
    def _prepare_run_dir(self, resume: bool) -> None:
        if dist_utils.is_main():
            self.run.lock()
            self._footprint.locked = True
        if resume:
            if not self.run.checkpoints.is_dir():
                raise RunDirError(f"{self.run.path}: no checkpoints to resume from")
        elif self.run.has_checkpoints():
            raise RunDirError(f"{self.run.path}: a run exists here already; resume it with "
                              f"`pldc train --resume {self.run.path}` or choose another name (--name)")
        if dist_utils.is_main() and not resume:
            save_config(self.cfg, self.run.config)  # a resume saves it once the checkpoint has loaded

    def train(self, stop_at: int | None = None) -> dict:
        """The loop (``TrainerBase.train``); a new run that fails before its first checkpoint leaves no folder."""
        try:
            return super().train(stop_at)
        except BaseException:
            from pldc_core.training.checkpoint import latest_checkpoint

            # A new run had no checkpoint before it started (see _prepare_run_dir): any there now is its own.
            if not self.resume and latest_checkpoint(self.run.path) is None:
                self._discard_failed_start()
            raise

    def _discard_failed_start(self) -> None:
        """Undo what this process added to the run folder (only while it holds the run's lock)."""
        if self._footprint is None or not self._footprint.locked:
            return  # another process's run, or nothing created yet
        self.run.release()
        removed = self._footprint.remove_additions()
        if removed:
            log.debug("the run did not start: removed %s", ", ".join(str(p) for p in removed))

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
        from pldc_core.method.dicc import training_clip

        return training_clip(self.cfg.pldc, self.data.categories.names, self.device)

    def _amp_dtype(self) -> torch.dtype | None:
        if self.device.type == "cuda" and self.cfg.train.amp:
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if self.device.type != "cpu":
            return None
        dtype = cpu_amp_dtype(self.cfg.train.amp_cpu)
        if dtype is not None and not cpu_has_native_bf16():
            log.warning("train.amp_cpu: this CPU has no native bfloat16 (AVX512-BF16 or AMX); bfloat16 autocast "
                        "works but emulated: a PL-DC step took 11x as long as in float32 on such a CPU "
                        "(benchmarks/results/cpu_amp_avx2.txt). train.amp_cpu: auto uses float32 there")
        return dtype

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Everything a checkpoint holds to resume this run exactly."""
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

        state = load_checkpoint(self.run.path, map_location=self.device)
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
        log.info("resumed %s at iteration %d", self.run.path, self.iter)

    @property
    def phase(self) -> str:
        """``burn_in`` (supervised only) or ``semi`` (teacher-student)."""
        return "burn_in" if self.iter < self.cfg.train.burn_in_iters or not self.cfg.pldc.enabled else "semi"

    @property
    def labelling_model(self) -> torch.nn.Module:
        """The model whose pseudo-labels are evaluated and recorded: the teacher, the student before it exists."""
        return self.teacher if self.teacher is not None else unwrap(self.student)

    def _start_teacher(self) -> None:
        self.teacher = copy.deepcopy(unwrap(self.student)).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)


    # ----------------------------------------------------------------------------- one step
    def before_train(self) -> None:
        """Restore the grad scaler of a resumed run, note this start in the run's history and open the
        data streams where it stopped."""
        if self._pending_scaler:
            self.scaler.load_state_dict(self._pending_scaler)
        if dist_utils.is_main():
            self._record_start()
        self.start_data_streams()

    def _record_start(self) -> None:
        """Append where and how the steps from ``iter`` on are trained to RUN/history.jsonl. Entries from
        this step on are dropped first: a resume repeats the steps after its checkpoint."""
        drop_lines_after(self.run.history, self.iter - 1)
        entry = {
            "iter": self.iter,
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": str(self.device),
            "device_name": (torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
                            else _cpu_name()),
            "precision": str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype is not None else "float32",
            "threads": torch.get_num_threads(),
            "processes": dist_utils.world_size(),
            "torch": torch.__version__,
        }
        if self.device.type == "cpu":
            entry["native_bf16"] = cpu_has_native_bf16()
        append_json_lines(self.run.history, [entry])

    def start_data_streams(self) -> None:
        """The labeled stream from step ``iter``; the unlabeled one opens at the first semi-supervised step."""
        self._open_labeled_stream()
        self._unl_iter = None

    def _open_labeled_stream(self) -> None:
        """The labeled stream from step ``iter`` at the current phase's batch size (``train.semi_batch_labeled``
        after burn-in). Step ``t`` draws positions ``[t*B, (t+1)*B)`` of the stream, so a run resumed in either
        phase draws what an uninterrupted one does."""
        from pldc_core.data.loader import infinite_batches

        t = self.cfg.train
        self._lab_size = self.batch_labeled_semi if self.phase == "semi" else self.batch_labeled
        self._lab_iter = infinite_batches(self.data.labeled, self._lab_size, seed=t.seed, start_iter=self.iter,
                                          rank=dist_utils.rank(), world_size=dist_utils.world_size(),
                                          num_workers=self.cfg.data.num_workers)

    def _unlabeled_batches(self):
        from pldc_core.data.loader import infinite_batches

        if self._unl_iter is None:
            t = self.cfg.train
            # The unlabeled stream starts at the first semi-supervised step, so a resumed run
            # continues it where it was.
            start = self.iter - t.burn_in_iters
            self._unl_iter = infinite_batches(self.data.unlabeled, self.batch_unlabeled, seed=t.seed + 1,
                                              start_iter=start, rank=dist_utils.rank(),
                                              world_size=dist_utils.world_size(),
                                              num_workers=self.cfg.data.num_workers)
        return self._unl_iter

    def _set_lr(self) -> float:
        t = self.cfg.train
        factor = 1.0
        if t.lr_schedule == "poly":
            factor = (1 - self.iter / t.max_iters) ** 0.9
        elif t.lr_schedule == "step":
            factor = t.lr_gamma ** bisect.bisect_right(t.lr_steps, self.iter)
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
        if self.phase == "semi" and self._lab_size != self.batch_labeled_semi:
            self._open_labeled_stream()  # the first PL-DC step, with train.semi_batch_labeled
        labeled = [s for s in next(self._lab_iter)]
        views = [s.image for s in labeled]
        targets_l = [{"labels": s.labels.to(self.device), "masks": s.masks.to(self.device).float()} for s in labeled]
        if self.cfg.train.labeled_strong_view:
            # the student also sees each labeled image's strong view, with the same targets
            views += [s.meta["strong_image"] for s in labeled]
            targets_l = targets_l + targets_l
        images_l = torch.stack(views).to(self.device, non_blocking=True)
        metrics = {"iter": self.iter + 1, "phase": self.phase, "lr": lr}

        if self.teacher is None and self.cfg.train.ema_from_start:
            self._start_teacher()
        if self.phase == "burn_in":
            with self._timed("student"), self._autocast():
                out = self.model(images_l)
                losses = self._losses(out, targets_l)
            loss = losses["loss"]
            # the pseudo-label columns exist in every line; they are empty before the teacher exists
            metrics.update(loss_sup=loss.item(), loss_unsup=0.0, n_queries=None, n_kept=None, n_kept_ddtf=None,
                           n_kept_coupled=None, n_dicc_changed=None, dicc_w=None)
        else:
            if self.teacher is None:
                self._start_teacher()
            if self.iter == self.cfg.train.burn_in_iters and self.cfg.train.student_from_ema:
                # the burn-in's EMA is a better model than its last student at a constant lr
                unwrap(self.student).load_state_dict(self.teacher.state_dict())
                log.info("iteration %d: the student starts PL-DC from the teacher's (EMA) weights", self.iter)
            pairs = next(self._unlabeled_batches())
            weak = torch.stack([p.weak.image for p in pairs]).to(self.device, non_blocking=True)
            strong = torch.stack([p.strong_image for p in pairs]).to(self.device, non_blocking=True)
            valid = torch.stack([p.weak.meta["valid"] for p in pairs]).to(self.device)
            targets_u, pl_stats = self.pseudo_label(weak, valid)
            metrics.update(pl_stats)
            with self._timed("student"), self._autocast():
                out = self.model(torch.cat([images_l, strong]))
            out_l, out_u = out.split(len(images_l))
            with self._timed("student"):
                sup = self._losses(out_l, targets_l)
            with self._timed("unsup_loss"):
                unsup = self._losses(out_u, targets_u)
            loss = sup["loss"] + self.cfg.train.unsup_weight * unsup["loss"]
            losses = {**{f"sup_{k}": v for k, v in sup.items()}, **{f"unsup_{k}": v for k, v in unsup.items()}}
            metrics.update(loss_sup=sup["loss"].item(), loss_unsup=unsup["loss"].item())

        if not torch.isfinite(loss):
            terms = {k: round(v.item(), 4) for k, v in losses.items() if not k[-1].isdigit()}
            last = self.run.checkpoints / POINTER
            if last.exists():
                then = (f"its last good checkpoint is kept ({last}). Lower train.lr, check the data, or resume with "
                        f"`pldc train --resume {self.run.path}`.")
            else:  # a new run that fails before its first checkpoint leaves no folder (see train)
                then = "no checkpoint was saved yet, so nothing is kept. Lower train.lr or check the data, and start again."
            raise TrainingDiverged(f"iteration {self.iter + 1}: the loss is {loss.item()} (terms: {terms}). "
                                   f"The run stopped; {then}")
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

    def _losses(self, out, targets: list[dict]) -> dict:
        """The set criterion on a model output, in float32, the decoder's intermediate layers included."""
        return self.criterion(out.class_logits.float(), out.mask_logits.float(), targets,
                              [(c.float(), m.float()) for c, m in out.aux])

    @torch.no_grad()
    def pseudo_label(self, weak: torch.Tensor, valid: torch.Tensor) -> tuple[list[dict], dict]:
        """The teacher step: the teacher labels the weak views, then filter, DICC and PMUA weights."""
        w = dicc_w_at(self.cfg, self.iter)
        step = teacher_step(self.teacher, weak, valid=valid, thresholds=self.thresholds, clip=self.clip, w=w,
                            timed=self._timed, autocast=self._autocast,
                            min_mask_area=self.thresholds.mask_area_threshold,
                            skip_settled=not self.cfg.pldc.dicc_partial,  # partial labels need CLIP's class on all
                            flip=self.cfg.pldc.teacher_flip)
        labels = step.pseudo_labels
        stats = {"n_queries": int(step.class_logits.shape[0] * step.class_logits.shape[1]),
                 "n_kept": sum(len(p) for p in labels),
                 "n_kept_ddtf": sum(p.kept.n_ddtf for p in labels),
                 "n_kept_coupled": sum(p.kept.n_coupled for p in labels),
                 "n_dicc_changed": sum(p.n_dicc_changed for p in labels) if self.clip is not None else None,
                 "dicc_w": w if self.clip is not None else None}
        partial = self.cfg.pldc.dicc_partial and self.clip is not None
        targets = [p.target(self.cfg.pldc.pmua, partial=partial) for p in labels]
        if partial:
            stats["n_dicc_partial"] = sum(int((t["second_labels"] != t["labels"]).sum()) for t in targets
                                          if "second_labels" in t)
        if self.cfg.pldc.ignore_c is not None:
            for i, (target, p) in enumerate(zip(targets, labels)):
                target["ignore_labels"], target["ignore_masks"] = uncertain_queries(
                    step.class_logits[i], step.mask_logits[i], p.kept.keep_idx, self.cfg.pldc.ignore_c,
                    valid=step.valid[i])
            stats["n_ignored"] = sum(len(t["ignore_labels"]) for t in targets)
        return targets, stats
