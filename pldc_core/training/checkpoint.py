"""Atomic training checkpoints of a run, and the RNG state that makes a resume exact.

Layout::

    RUN/checkpoints/ckpt_0001000.pt   # torch.save of the trainer's state dict
    RUN/checkpoints/last.json         # {"checkpoint": "ckpt_0001000.pt", "iteration": 1000, "best": ...}

Invariants: a ``ckpt_*.pt`` file only ever appears complete (written to a temporary file,
then renamed); ``last.json`` is replaced only after the checkpoint it names is in place, so it
is the commit point of a save; the checkpoint ``last.json`` names, and the one it marks
``best``, are never deleted.

Trust boundary: checkpoints hold optimizer/scheduler state, the config and RNG states, which
need full unpickling, so they are loaded with ``torch.load(weights_only=False)``. Unpickling
can run arbitrary code: ``load_checkpoint`` is only for files this module wrote into run
folders you created. Never point it at a checkpoint someone sent you or one downloaded from
the internet; third-party weights (backbones, CLIP) go through ``weights_only=True`` loaders.
"""
from __future__ import annotations

import json
import os
import random
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from pldc_core.atomic import atomic_path, write_json
from pldc_core.messages import first_sentence
from pldc_core.run_dir import CHECKPOINT_DIR

POINTER = "last.json"
_NAME = re.compile(r"^ckpt_(\d{7,})\.pt$")
# Temporary files atomic_path leaves behind when a process is killed mid-save.
_STALE_TEMP = re.compile(r"^\.(ckpt_\d{7,}\.pt|last\.json)\..*\.tmp$")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or not one of ours (bad input, hence a ValueError).

    ``reason``: what is wrong, without the file's path (the message starts with it).
    """

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


def checkpoint_path(run_dir: str | os.PathLike, iteration: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"ckpt_{iteration:07d}.pt"


def save_checkpoint(run_dir: str | os.PathLike, iteration: int, state: dict, keep: int = 3,
                    best: bool = False) -> Path:
    """Write ``state`` as RUN/checkpoints/ckpt_{iteration:07d}.pt, then point last.json at it.

    Keeps the ``keep`` checkpoints with the highest iterations, plus the best one: the latest
    saved with ``best=True`` (a new best releases the previous one to the normal retention).
    A save that fails part-way leaves the previous checkpoints and last.json as they were.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    if iteration < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration}")
    if "iteration" in state and state["iteration"] != iteration:
        raise ValueError(f"state['iteration'] = {state['iteration']} but saving as iteration {iteration}")
    path = checkpoint_path(run_dir, iteration)
    ckpt_dir = path.parent
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    for stale in ckpt_dir.iterdir():
        if _STALE_TEMP.match(stale.name):
            stale.unlink(missing_ok=True)
    previous = _read_pointer(ckpt_dir) or {}

    with atomic_path(path) as tmp:
        torch.save(state, tmp)

    best_name = path.name if best else previous.get("best")
    if best_name is not None and not (_NAME.match(str(best_name)) and (ckpt_dir / best_name).is_file()):
        best_name = None
    write_json(ckpt_dir / POINTER, {"checkpoint": path.name, "iteration": iteration, "best": best_name})

    protected = {path.name, best_name}
    for rank, (_, old) in enumerate(_list_checkpoints(ckpt_dir)):
        if rank >= keep and old.name not in protected:
            old.unlink(missing_ok=True)
    return path


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint last.json names; else the highest-iteration file; None if there is none.

    Does not open the file; ``load_checkpoint(run_dir)`` also checks that it loads.
    """
    ckpt_dir = Path(run_dir) / CHECKPOINT_DIR
    if not ckpt_dir.is_dir():
        return None
    pointer = _read_pointer(ckpt_dir)
    if pointer is not None and (ckpt_dir / pointer["checkpoint"]).is_file():
        return ckpt_dir / pointer["checkpoint"]
    files = _list_checkpoints(ckpt_dir)
    return files[0][1] if files else None


def best_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint last saved with ``best=True``, if it still exists."""
    ckpt_dir = Path(run_dir) / CHECKPOINT_DIR
    pointer = _read_pointer(ckpt_dir) if ckpt_dir.is_dir() else None
    if pointer is None or pointer.get("best") is None or not (ckpt_dir / pointer["best"]).is_file():
        return None
    return ckpt_dir / pointer["best"]


def load_checkpoint(path_or_run_dir: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a checkpoint file, or the latest good checkpoint of a run folder.

    A file that cannot be read raises ``CheckpointError`` naming it. For a run folder see
    ``load_latest_checkpoint``. Unpickles (``weights_only=False``): only for our own files,
    see the module docstring.
    """
    path = Path(path_or_run_dir)
    if path.is_dir():
        return load_latest_checkpoint(path, map_location)[1]
    if not path.exists():
        raise CheckpointError(f"{path}: no such run folder or checkpoint file")
    return _load_file(path, map_location)


def load_latest_checkpoint(run_dir: str | os.PathLike, map_location: Any = "cpu") -> tuple[Path, dict]:
    """(path, state) of the checkpoint last.json names, falling back to older ones.

    If last.json is missing or unreadable, the highest-iteration file is tried first. A
    corrupt or truncated file is skipped with a warning in favour of the previous checkpoint;
    ``CheckpointError`` if none loads.
    """
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    files = _list_checkpoints(ckpt_dir) if ckpt_dir.is_dir() else []
    pointer = _read_pointer(ckpt_dir) if ckpt_dir.is_dir() else None
    target = ckpt_dir / pointer["checkpoint"] if pointer is not None else None
    if target is not None and target.is_file():
        newest = _iteration_of(target.name)
        candidates = [target] + [p for it, p in files if it < newest]
    else:
        if files:
            warnings.warn(f"{ckpt_dir / POINTER}: missing or pointing nowhere; using the newest checkpoint file",
                          RuntimeWarning, stacklevel=2)
        candidates = [p for _, p in files]
    if not candidates:
        if not ckpt_dir.is_dir():
            raise CheckpointError(f"{run_dir}: no checkpoint here (no {CHECKPOINT_DIR}/ folder): not a run folder, "
                                  "or a run that has not saved a checkpoint yet")
        raise CheckpointError(f"{run_dir}: no checkpoint found under {ckpt_dir}")
    errors: list[CheckpointError] = []
    for candidate in candidates:
        try:
            state = _load_file(candidate, map_location)
        except CheckpointError as exc:
            errors.append(exc)
            continue
        # Warn about the skipped files only once one loads: if none does, the error says it all.
        for exc, skipped_to in zip(errors, candidates[1:]):
            warnings.warn(f"{exc}; falling back to {skipped_to.name}", RuntimeWarning, stacklevel=2)
        return candidate, state
    # One line however many files: the names that share a reason, then the reason.
    by_reason: dict[str, list[str]] = {}
    for candidate, exc in zip(candidates, errors):
        by_reason.setdefault(exc.reason, []).append(candidate.name)
    raise CheckpointError(f"{run_dir}: no loadable checkpoint: "
                          + "; ".join(f"{', '.join(names)}: {reason}" for reason, names in by_reason.items()))


def capture_rng_state(generators: Mapping[str, torch.Generator | np.random.Generator] | None = None) -> dict:
    """The global RNG states (python, numpy, torch CPU, every CUDA device) of this process.

    ``generators``: named explicit generators to capture as well. In a distributed run each
    rank has its own state; this captures the calling process's only.
    """
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generators:
        state["generators"] = {name: g.get_state() if isinstance(g, torch.Generator) else g.bit_generator.state
                               for name, g in generators.items()}
    return state


def restore_rng_state(state: Mapping[str, Any],
                      generators: Mapping[str, torch.Generator | np.random.Generator] | None = None) -> None:
    """Put back what ``capture_rng_state`` captured (and the named ``generators``' states)."""
    missing = [k for k in ("python", "numpy", "torch") if k not in state]
    if missing:
        raise CheckpointError(f"RNG state lacks {missing}")
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda")
    if cuda_states:
        if torch.cuda.is_available():
            for device, cuda_state in enumerate(cuda_states[:torch.cuda.device_count()]):
                torch.cuda.set_rng_state(cuda_state.cpu(), device)
        else:
            warnings.warn("checkpoint holds CUDA RNG states but CUDA is not available; they are not restored",
                          RuntimeWarning, stacklevel=2)
    saved = state.get("generators", {})
    for name, g in (generators or {}).items():
        if name not in saved:
            raise CheckpointError(f"RNG state has no generator named '{name}'")
        if isinstance(g, torch.Generator):
            g.set_state(saved[name].cpu())
        else:
            g.bit_generator.state = saved[name]


def _iteration_of(name: str) -> int:
    match = _NAME.match(name)
    return int(match.group(1)) if match else -1


def _list_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """(iteration, path) of every ckpt_*.pt file, highest iteration first."""
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _NAME.match(p.name)) and p.is_file()]
    return sorted(found, reverse=True)


def _read_pointer(ckpt_dir: Path) -> dict | None:
    path = ckpt_dir / POINTER
    if not path.exists():
        return None
    try:
        pointer = json.loads(path.read_text())
        if not isinstance(pointer, dict) or not _NAME.match(str(pointer.get("checkpoint"))):
            raise ValueError("no valid 'checkpoint' entry")
    except (OSError, ValueError) as exc:
        warnings.warn(f"{path}: unreadable ({exc}); ignoring it", RuntimeWarning, stacklevel=3)
        return None
    return pointer


def _load_file(path: Path, map_location: Any) -> dict:
    def error(reason: str) -> CheckpointError:
        return CheckpointError(f"{path}: {reason}", reason)

    if not path.is_file():
        raise error("no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises several types for a damaged zip/pickle
        raise error(f"corrupt or truncated checkpoint ({type(exc).__name__}: {first_sentence(str(exc))})") from exc
    if not isinstance(state, dict):
        raise error(f"not a PL-DC checkpoint (holds a {type(state).__name__}, not a dict)")
    return state
