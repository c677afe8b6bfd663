"""Start, stop and resume training runs from a form, as separate processes.

A run is ``python -m pldc_core.cli train --config FILE KEY=VALUE ... --run-dir RUN`` started in
its own session (``start_new_session``), its output in ``RUN/train.log``: closing the workbench,
or the browser, does not touch it. ``RUN/launch.json`` records the process id and command at
once, before the trainer writes its first ``status.json`` (see ``runs``).

Settings are checked before anything starts (``check_settings``): the config through
``pldc_core.config.load_config`` (ConfigError names the key), then the dataset, its split and,
with DICC, the CLIP weights, so that the form can show one clear message instead of a run that
fails a minute later.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from apps.gradio_app.runs import PathEscapeError, inside, pid_alive, run_dir, run_info
from pldc_core.atomic import write_json
from pldc_core.config import ConfigError, ExperimentConfig, load_config
from pldc_core.run_dir import LAUNCH_FILE, TRAIN_LOG, RunDir

REPO_ROOT = Path(__file__).resolve().parents[2]


class LaunchError(ValueError):
    """The run cannot be started, stopped or resumed; the message says why."""


@dataclass
class TrainSettings:
    """The knobs of the training form (None: keep the config's value)."""

    dataset: str | None = None
    percent: float | None = None
    split_seed: int | None = None
    filter: str | None = None          # ddtf | coupled
    c_t: float | None = None
    m_t: float | None = None
    s_t: float | None = None
    dicc: bool | None = None
    clip_weights: str | None = None    # relative to the data root
    registry_file: str | None = None   # a dataset registry YAML (`pldc data --registry`), under the data root
    pmua: bool | None = None
    unsup_weight: float | None = None  # lambda
    ema_alpha: float | None = None
    max_iters: int | None = None
    burn_in_iters: int | None = None

    _KEYS = {"dataset": "data.dataset", "percent": "data.percent", "split_seed": "data.split_seed",
             "filter": "pldc.filter", "c_t": "pldc.c_t", "m_t": "pldc.m_t", "s_t": "pldc.s_t",
             "dicc": "pldc.dicc", "pmua": "pldc.pmua", "unsup_weight": "train.unsup_weight",
             "ema_alpha": "train.ema_alpha", "max_iters": "train.max_iters",
             "burn_in_iters": "train.burn_in_iters"}

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> "TrainSettings":
        return cls(dataset=cfg.data.dataset, percent=cfg.data.percent, split_seed=cfg.data.split_seed,
                   filter=cfg.pldc.filter, c_t=cfg.pldc.c_t, m_t=cfg.pldc.m_t, s_t=cfg.pldc.s_t,
                   dicc=cfg.pldc.dicc, clip_weights=cfg.pldc.clip_weights, registry_file=cfg.data.registry_file,
                   pmua=cfg.pldc.pmua,
                   unsup_weight=cfg.train.unsup_weight, ema_alpha=cfg.train.ema_alpha,
                   max_iters=cfg.train.max_iters, burn_in_iters=cfg.train.burn_in_iters)

    def overrides(self, data_root: str | os.PathLike) -> list[str]:
        """``key=value`` overrides for ``pldc train``; the data root is always the workbench's."""
        out = [f"data.data_root={Path(data_root).resolve()}"]
        for attr, key in self._KEYS.items():
            value = getattr(self, attr)
            if value is None:
                continue
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, float) and value.is_integer() and attr in ("max_iters", "burn_in_iters",
                                                                             "split_seed"):
                text = str(int(value))
            else:
                text = str(value)
            out.append(f"{key}={text}")
        if self.clip_weights:
            out.append(f"pldc.clip_weights={inside(data_root, self.clip_weights)}")
        if self.registry_file:
            out.append(f"data.registry_file={inside(data_root, self.registry_file)}")
        return out


def list_configs(configs_dir: str | os.PathLike = REPO_ROOT / "configs") -> list[Path]:
    """The YAML configs shipped with the project."""
    folder = Path(configs_dir)
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


def check_settings(config_file: str | os.PathLike, settings: TrainSettings,
                   data_root: str | os.PathLike) -> tuple[ExperimentConfig, list[str]]:
    """The validated config and the overrides that give it; LaunchError with a clear message if invalid."""
    from pldc_core.data.coco import DatasetError
    from pldc_core.data.registry import get_dataset, split_file_of
    from pldc_core.data.splits import load_split

    try:
        overrides = settings.overrides(data_root)
        cfg = load_config(config_file, overrides)
    except (ConfigError, PathEscapeError) as exc:
        raise LaunchError(str(exc)) from None
    d = cfg.data
    try:
        spec = get_dataset(d.dataset, data_root=d.data_root, registry_file=d.registry_file)
        for what, path in (("training annotations", spec.train_json), ("training images", spec.image_root_train),
                           ("validation annotations", spec.val_json), ("validation images", spec.image_root_val)):
            if path is None or not Path(path).exists():
                hint = " (make it with `pldc data make-synthetic`)" if d.dataset == "synthetic" else ""
                raise LaunchError(f"dataset '{d.dataset}': {what} not found at {path}{hint}")
        load_split(split_file_of(d), d.percent, d.split_seed)
    except DatasetError as exc:
        raise LaunchError(str(exc)) from None
    if cfg.pldc.enabled and cfg.pldc.dicc:
        weights = cfg.pldc.clip_weights
        if not weights:
            raise LaunchError("pldc.dicc: DICC needs CLIP weights; give a weights file under the data folder "
                              "(pldc.clip_weights), or turn DICC off")
        if weights != "openai" and not Path(weights).is_file():
            raise LaunchError(f"pldc.clip_weights: {weights} is not a file")
    return cfg, overrides


def _python_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("PLDC_NO_PROGRESS", "1")  # the log is a file: no progress bar redraws in it
    return env


def _spawn(run: Path, args: list[str], max_iters: int | None) -> int:
    command = [sys.executable, "-m", "pldc_core.cli", "train", *args]
    run.mkdir(parents=True, exist_ok=True)
    with open(run / TRAIN_LOG, "ab") as log:
        log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} started by the workbench: {' '.join(command)}\n".encode())
        log.flush()
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=_python_env(), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    write_json(run / LAUNCH_FILE, {"pid": proc.pid, "command": command, "started": time.time(),
                                   "max_iters": max_iters})
    _children[proc.pid] = proc
    return proc.pid


# Popen objects of the runs this process started: polling them reaps finished children, so a
# stopped run's process does not linger as a zombie while the workbench keeps running.
_children: dict[int, subprocess.Popen] = {}


def reap() -> None:
    """Collect the exit status of finished runs started by this process."""
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]


def start_run(runs_root: str | os.PathLike, name: str, config_file: str | os.PathLike, settings: TrainSettings,
              data_root: str | os.PathLike) -> Path:
    """Check the settings and start ``pldc train`` for a new run ``RUNS_ROOT/name``; returns its folder."""
    try:
        run = run_dir(runs_root, name)
    except PathEscapeError as exc:
        raise LaunchError(str(exc)) from None
    if run.exists() and any(run.iterdir()):
        raise LaunchError(f"run '{name}' exists already ({run}); choose another name, or select it and resume it")
    cfg, overrides = check_settings(config_file, settings, data_root)
    _spawn(run, ["--config", str(Path(config_file).resolve()), *overrides, f"name={name}", "--run-dir", str(run)],
           cfg.train.max_iters)
    return run


def can_stop(info) -> bool:
    """Whether ``stop_run`` would stop this run (its ``runs.RunInfo``): it is starting or running."""
    return bool(info.active and pid_alive(info.pid))


def stop_run(run: str | os.PathLike) -> str:
    """Ask a running run to stop (SIGTERM: it saves a checkpoint, then exits as 'stopped')."""
    info = run_info(run)
    if not info.active or not pid_alive(info.pid):
        raise LaunchError(f"run '{info.name}' is not running (state: {info.state})")
    try:
        os.kill(info.pid, signal.SIGTERM)
    except ProcessLookupError:
        raise LaunchError(f"run '{info.name}': its process {info.pid} has just ended") from None
    return (f"asked run '{info.name}' to stop: it saves a checkpoint after the current step, "
            "then its state becomes 'stopped'")


def _why_not_resumable(run: Path, info) -> str | None:
    if info.active:
        return f"run '{info.name}' is {info.state}; stop it first"
    if info.state == "finished":
        return f"run '{info.name}' has finished ({info.iteration}/{info.max_iters} iterations)"
    ckpts = RunDir(run).checkpoints
    if not ckpts.is_dir() or not any(ckpts.glob("*.pt")):
        return f"run '{info.name}' has no checkpoint to resume from; start a new run instead"
    return None


def can_resume(run: str | os.PathLike, info=None) -> bool:
    """Whether ``resume_run`` would continue this run (stopped, failed or died, with a checkpoint)."""
    run = Path(run)
    return _why_not_resumable(run, info or run_info(run)) is None


def resume_run(run: str | os.PathLike) -> int:
    """Continue a stopped, failed or died run from its last checkpoint; returns the process id."""
    run = Path(run)
    info = run_info(run)
    why = _why_not_resumable(run, info)
    if why:
        raise LaunchError(why)
    try:
        load_config(RunDir(run).config)
    except ConfigError as exc:
        raise LaunchError(str(exc)) from None
    return _spawn(run, ["--resume", str(run)], info.max_iters)
