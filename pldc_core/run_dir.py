"""A run folder: its layout and file names, its lock and its status file (no torch).

One training run owns one folder::

    RUN/
        config.yaml        the resolved experiment config
        status.json        state, iteration, pid, best eval: rewritten atomically as the run goes
        history.jsonl      one JSON line per start or resume: from which step, on what device, in which
                           precision, with how many threads (read_history)
        .lock              holds the pid of the one process that trains this run (flock)
        metrics.jsonl      one JSON line per step
        eval.jsonl         one JSON line per evaluation
        checkpoints/       ckpt_XXXXXXX.pt and last.json (training.checkpoint)
        records/           iter_XXXXXXX/ pseudo-label records (records.store)
        clip_gt_crops.parquet   CLIP alone on the GT instances, per DICC mode (`pldc clip-crops`)
        curation/          edits.jsonl and curated exports (apps)
        train.log, launch.json  written when the app starts the run

Every module that reads or writes these names takes them from here.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from pldc_core.atomic import write_json
from pldc_core.jsonl import read_json_lines

CONFIG_FILE = "config.yaml"
STATUS_FILE = "status.json"
HISTORY_FILE = "history.jsonl"
LOCK_FILE = ".lock"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.jsonl"
CHECKPOINT_DIR = "checkpoints"
RECORDS_DIR = "records"
CLIP_TABLE_FILE = "clip_gt_crops.parquet"
CURATION_DIR = "curation"
TRAIN_LOG = "train.log"
LAUNCH_FILE = "launch.json"


class RunDirError(RuntimeError):
    """The run folder is missing, or exists already where a new run was asked for."""


class RunDir:
    """The paths of one run folder, plus the lock and status file of the process that trains it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_file = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def status(self) -> Path:
        return self.path / STATUS_FILE

    @property
    def history(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def evals(self) -> Path:
        return self.path / EVAL_FILE

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def records_root(self) -> Path:
        return self.path / RECORDS_DIR

    def records(self, iteration: int) -> Path:
        """``RUN/records/iter_XXXXXXX`` of one checkpoint."""
        return self.records_root / f"iter_{int(iteration):07d}"

    @property
    def clip_table(self) -> Path:
        return self.path / CLIP_TABLE_FILE

    @property
    def curation(self) -> Path:
        return self.path / CURATION_DIR

    @property
    def train_log(self) -> Path:
        return self.path / TRAIN_LOG

    @property
    def launch_file(self) -> Path:
        return self.path / LAUNCH_FILE

    def has_checkpoints(self) -> bool:
        """Whether the checkpoints folder holds anything."""
        return self.checkpoints.is_dir() and any(self.checkpoints.iterdir())

    def lock(self) -> None:
        """Hold an exclusive lock on RUN/.lock for this process's life: one trainer per run folder."""
        import fcntl

        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path}: exists and is not a folder; give a run folder")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.path / LOCK_FILE, "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.seek(0)
            owner = self._lock_file.read().strip() or "unknown"
            self._lock_file.close()
            raise RunDirError(f"{self.path}: another process (pid {owner}) is training this run; "
                              "stop it first (it saves a checkpoint on SIGTERM)") from None
        self._lock_file.truncate(0)
        self._lock_file.write(str(os.getpid()))
        self._lock_file.flush()

    def release(self) -> None:
        """Give up the lock (this process's exit does it too)."""
        if self._lock_file is not None and not self._lock_file.closed:
            self._lock_file.close()

    def write_status(self, state: str, *, iteration: int, max_iters: int, phase: str, best: dict,
                     error: str | None = None) -> None:
        """Rewrite status.json atomically (the app and ``pldc`` read it to show a run's state)."""
        write_json(self.status, {
            "state": state, "iteration": iteration, "max_iters": max_iters, "phase": phase, "pid": os.getpid(),
            "updated": time.time(), "best": best, "error": error,
        })


def read_history(run: str | os.PathLike) -> list[dict]:
    """The entries of RUN/history.jsonl in order, one per start or resume: from which step (``iter``) it
    trained, on what ``device``, in which ``precision``. Empty for a run from before the file existed;
    a line cut short by a kill is skipped."""
    return read_json_lines(Path(run) / HISTORY_FILE)


@dataclass
class RunFootprint:
    """What existed of a run folder before a process wrote to it, so that a failed start can be undone.

    ``new_root``: the topmost missing folder on the way to ``path`` (``path`` itself, or a parent
    such as ``runs/``), None when ``path`` existed; ``entries``: the names ``path`` held then.
    ``locked`` is set once this process holds the run's lock (only then may it remove anything).
    """

    path: Path
    new_root: Path | None
    entries: frozenset[str] = field(default_factory=frozenset)
    locked: bool = False
    lock_file: tuple[bytes, int] | None = None  # the lock file's content and mtime (ns), if it existed

    @classmethod
    def of(cls, path: str | os.PathLike) -> "RunFootprint":
        """The footprint of ``path`` now."""
        path = Path(path).absolute()
        new_root, probe = None, path
        while not probe.exists() and not probe.is_symlink() and probe.parent != probe:
            new_root, probe = probe, probe.parent
        entries = frozenset(os.listdir(path)) if new_root is None and path.is_dir() else frozenset()
        lock = path / LOCK_FILE
        lock_file = (lock.read_bytes(), lock.stat().st_mtime_ns) if LOCK_FILE in entries and lock.is_file() else None
        return cls(path, new_root, entries, lock_file=lock_file)

    def remove_additions(self) -> list[Path]:
        """Remove what was added since: the run folder if it is new (and the parents made for it, while
        empty), else the entries it did not hold (and the lock file's old content goes back). Returns
        what was removed. Call it after giving up the lock."""
        removed: list[Path] = []
        if self.new_root is not None:
            if self.path.is_dir():
                shutil.rmtree(self.path)
                removed.append(self.path)
            parent = self.path.parent
            while self.new_root in (parent, *parent.parents):
                try:
                    parent.rmdir()  # only while empty: another run may have appeared there meanwhile
                except OSError:
                    break
                removed.append(parent)
                parent = parent.parent
            return removed
        if not self.path.is_dir():
            return removed
        if self.lock_file is not None:  # taking the lock wrote this process's pid into it: put back what was there
            lock = self.path / LOCK_FILE
            lock.write_bytes(self.lock_file[0])
            os.utime(lock, ns=(self.lock_file[1], self.lock_file[1]))
        for name in sorted(set(os.listdir(self.path)) - self.entries):
            entry = self.path / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
        return removed
