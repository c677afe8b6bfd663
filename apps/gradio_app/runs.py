"""The runs under a runs folder: their state, progress and logs, read from the files a run writes.

A run folder (``pldc train --run-dir``) holds ``status.json`` (written by the trainer at start, at
each checkpoint and at the end), ``metrics.jsonl`` (one line per step), ``eval.jsonl`` and
``records/``. A run started by the workbench also holds ``launch.json`` (``launch``):
the process id from before the trainer wrote its first status, so a run that is still starting,
or that died before writing any status, is reported truthfully.

States: the trainer's ``running | finished | failed | stopped``, plus ``starting`` (launched,
no status yet) and ``died`` (the status says running or starting but the process is gone).
Paths that come from a user go through ``inside`` so that they cannot leave their root.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pldc_core.jsonl import parse_json_lines, read_json_lines
from pldc_core.records.store import list_record_iterations
from pldc_core.run_dir import (CONFIG_FILE, EVAL_FILE, LAUNCH_FILE, METRICS_FILE, RECORDS_DIR, STATUS_FILE,
                               TRAIN_LOG)
from pldc_core.units import AP_METRICS, format_ap, format_metrics

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
ETA_WINDOW = 20  # steps whose mean sec_per_iter estimates the time left


class PathEscapeError(ValueError):
    """A user-given path resolves outside the folder it must stay in."""


def inside(root: str | os.PathLike, user_path: str | os.PathLike) -> Path:
    """``user_path`` (relative to ``root``, or absolute) resolved; PathEscapeError if it leaves ``root``.

    Symbolic links are resolved before the check, so a link inside ``root`` pointing elsewhere
    is refused too.
    """
    root_resolved = Path(root).resolve()
    text = str(user_path).strip()
    if not text or "\x00" in text:
        raise PathEscapeError(f"{text!r}: not a path")
    candidate = (root_resolved / Path(text).expanduser()).resolve()
    if candidate != root_resolved and root_resolved not in candidate.parents:
        raise PathEscapeError(f"{text!r} is outside {root_resolved}; paths must stay inside it")
    return candidate


def run_dir(runs_root: str | os.PathLike, name: str) -> Path:
    """The folder of run ``name`` under ``runs_root``; PathEscapeError for names that are not plain folder names."""
    name = str(name or "").strip()
    if not RUN_NAME.match(name):
        raise PathEscapeError(f"run name {name!r}: use letters, digits, '.', '_' or '-' "
                              "(no '/' or '..'), starting with a letter or digit")
    return inside(runs_root, name)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid) -> bool:
    """Whether a process with this id exists (and, on Linux, is not a zombie)."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def tail_lines(path: Path, n: int = 1, block: int = 8192) -> list[str]:
    """The last ``n`` complete lines of a text file (fewer if it is shorter), without reading it all."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            data = b""
            while end > 0 and data.count(b"\n") <= n:
                start = max(0, end - block)
                f.seek(start)
                data = f.read(end - start) + data
                end = start
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    if data and not data.endswith(b"\n"):
        lines = lines[:-1]  # still being written
    return [line for line in lines if line.strip()][-n:]


def _last_metrics(path: Path, n: int) -> list[dict]:
    return parse_json_lines(tail_lines(path, n))


@dataclass
class RunInfo:
    """What the run list shows about one run."""

    name: str
    path: Path
    state: str                      # running | starting | finished | failed | stopped | died | unknown
    iteration: int                  # last logged step (metrics.jsonl), else the status's
    max_iters: int | None
    phase: str | None
    best_ap: float | None
    best_iter: int | None
    updated: float | None           # seconds since the epoch of the latest file change
    pid: int | None
    error: str | None
    eta_s: float | None             # seconds left at the recent speed (running runs only)
    records: list[int] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.state in ("running", "starting")

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.iteration / self.max_iters) if self.max_iters else None


def _best(run: Path, status: dict) -> tuple[float | None, int | None]:
    best = status.get("best") or {}
    if best.get("AP") is not None:
        return float(best["AP"]), best.get("iter")
    evals = read_json_lines(run / EVAL_FILE)
    scored = [e for e in evals if isinstance(e.get("AP"), (int, float))]
    if not scored:
        return None, None
    top = max(scored, key=lambda e: e["AP"])
    return float(top["AP"]), top.get("iter")


def _log_error(run: Path, lines: int = 6) -> str | None:
    tail = tail_lines(run / TRAIN_LOG, lines)
    return "\n".join(tail) if tail else None


def run_info(run: str | os.PathLike) -> RunInfo:
    """The state, progress, best AP and ETA of one run folder."""
    run = Path(run)
    status = _read_json(run / STATUS_FILE) or {}
    launch = _read_json(run / LAUNCH_FILE) or {}
    state = status.get("state")
    pid = status.get("pid") or launch.get("pid")
    error = status.get("error")
    if launch and (not status or launch.get("started", 0) > status.get("updated", 0)):
        # launched (or resumed) after the last status was written: the status is from before
        pid = launch.get("pid")
        state = "starting" if pid_alive(pid) else "failed"
        if state == "failed":
            error = _log_error(run) or "the training process ended before writing a status"
    elif state == "running" and not pid_alive(pid):
        state, error = "died", error or _log_error(run) or "the training process is gone"
    recent = _last_metrics(run / METRICS_FILE, ETA_WINDOW)
    iteration = int(recent[-1].get("iter", 0)) if recent else int(status.get("iteration") or 0)
    iteration = max(iteration, int(status.get("iteration") or 0))
    max_iters = status.get("max_iters") or launch.get("max_iters")
    phase = recent[-1].get("phase") if recent else status.get("phase")
    eta = None
    if state in ("running", "starting") and recent and max_iters:
        speeds = [r["sec_per_iter"] for r in recent if isinstance(r.get("sec_per_iter"), (int, float))]
        if speeds:
            eta = max(0.0, (int(max_iters) - iteration) * sum(speeds) / len(speeds))
    best_ap, best_iter = _best(run, status)
    mtimes = [p.stat().st_mtime for p in (run / STATUS_FILE, run / METRICS_FILE, run / LAUNCH_FILE) if p.exists()]
    if state is None:
        state = "unknown" if not list_record_iterations(run) else "finished"
    return RunInfo(name=run.name, path=run, state=state, iteration=iteration,
                   max_iters=int(max_iters) if max_iters else None, phase=phase, best_ap=best_ap,
                   best_iter=best_iter, updated=max(mtimes) if mtimes else None,
                   pid=int(pid) if pid else None, error=error, eta_s=eta, records=list_record_iterations(run))


def is_run(path: Path) -> bool:
    """A folder that looks like a run: a config, a status, a launch record or records."""
    return path.is_dir() and any((path / name).exists() for name in (CONFIG_FILE, STATUS_FILE, LAUNCH_FILE,
                                                                      RECORDS_DIR))


def list_runs(runs_root: str | os.PathLike) -> list[RunInfo]:
    """Every run directly under ``runs_root``, most recently updated first."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    runs = [run_info(p) for p in sorted(root.iterdir()) if not p.name.startswith(".") and is_run(p)]
    return sorted(runs, key=lambda r: (r.updated or 0.0, r.name), reverse=True)


def format_duration(seconds: float | None) -> str:
    """``1 h 05 min``, ``3 min 20 s``, ``12 s``; an empty string for None."""
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def runs_table(runs: list[RunInfo]) -> pd.DataFrame:
    """The run list as a table: run, state, progress (with ETA while running), best AP."""
    rows = []
    for r in runs:
        progress = f"{r.iteration}/{r.max_iters}" if r.max_iters else str(r.iteration or "")
        if r.eta_s is not None:
            progress += f" (ETA {format_duration(r.eta_s)})"
        rows.append({"run": r.name, "state": r.state, "progress": progress,
                     "best AP": "" if r.best_ap is None else format_ap(r.best_ap)})
    return pd.DataFrame(rows, columns=["run", "state", "progress", "best AP"])


def format_log_line(record: dict) -> str:
    """One ``metrics.jsonl`` or ``eval.jsonl`` line, short: ``iter 950 · semi · loss 1.234 · ...``; any AP with
    its unit."""
    parts = []
    for key, value in record.items():
        if key in AP_METRICS or value is None:
            continue
        if key in ("iter", "iteration", "step"):
            parts.insert(0, f"iter {value}")
        elif isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        else:
            parts.append(f"{key} {value}" if key != "phase" else str(value))
    aps = format_metrics(record)
    return " · ".join(parts + ([aps] if aps else []))


def log_tail(run: str | os.PathLike, n: int = 12) -> str:
    """The end of a run's output: ``train.log`` for a run started by the workbench; for a run started from
    the command line (its output went to that terminal) the last metrics and evaluation lines, saying so."""
    run = Path(run)
    if (run / TRAIN_LOG).exists():
        lines = tail_lines(run / TRAIN_LOG, n)
        return "\n".join(lines) if lines else f"{TRAIN_LOG} is empty so far."
    metrics = parse_json_lines(tail_lines(run / METRICS_FILE, n))
    evals = parse_json_lines(tail_lines(run / EVAL_FILE, 2))
    if not metrics and not evals:
        return (f"No {TRAIN_LOG}, {METRICS_FILE} or {EVAL_FILE} in this run folder yet: a run started from the "
                "command line writes its output to that terminal, and its metrics once training steps are done.")
    head = (f"No {TRAIN_LOG}: this run was started from the command line, so its output went to that terminal. "
            f"The last lines of {METRICS_FILE}" + (f" and {EVAL_FILE}" if evals else "") + " instead:")
    return "\n".join([head, *(format_log_line(r) for r in metrics),
                      *(f"evaluation: {format_log_line(r)}" for r in evals)])


class LogReader:
    """A JSON-lines log read incrementally: each ``read()`` parses only the lines added since the last.

    A file that shrank or was replaced (a resumed run drops the lines after its checkpoint) is read
    again from the start. ``read()`` returns the whole log as a DataFrame with ``iteration`` for
    ``iter``, and whether it changed since the previous call.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._records: list[dict] = []
        self._offset = 0
        self._identity: tuple[int, int] | None = None
        self._frame = pd.DataFrame()

    def read(self) -> tuple[pd.DataFrame, bool]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            changed = bool(self._records)
            self.__init__(self.path)
            return self._frame, changed
        identity = (st.st_ino, st.st_dev)
        if identity != self._identity or st.st_size < self._offset:
            self._records, self._offset, self._identity = [], 0, identity
        if st.st_size == self._offset and self._records:
            return self._frame, False
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        complete = data[:data.rfind(b"\n") + 1]  # a last line without newline is still being written
        self._offset += len(complete)
        self._records.extend(parse_json_lines(complete.decode("utf-8", errors="replace").splitlines()))
        frame = pd.DataFrame.from_records(self._records)
        if "iter" in frame.columns:
            frame = frame.rename(columns={"iter": "iteration"})
        self._frame = frame
        return frame, True


_readers: dict[Path, LogReader] = {}


def read_log(run: str | os.PathLike, name: str) -> tuple[pd.DataFrame, bool]:
    """``metrics.jsonl`` or ``eval.jsonl`` of a run as a table (cached; see ``LogReader``)."""
    if name not in (METRICS_FILE, EVAL_FILE):
        raise ValueError(f"unknown log {name!r}; one of {METRICS_FILE}, {EVAL_FILE}")
    path = Path(run).resolve() / name
    reader = _readers.get(path)
    if reader is None:
        reader = _readers[path] = LogReader(path)
    return reader.read()
