"""The training loop, apart from what one step does (detectron2's ``TrainerBase``).

``train()`` runs ``run_step()`` until ``max_iters`` or a stop request, calling each hook's
``before_train`` / ``after_step`` / ``after_train``, and keeps the run folder's status file
current. Invariant: ``iter`` is the number of optimizer steps taken so far; hooks see it
already advanced past the step whose metrics they receive.
"""
from __future__ import annotations

import logging
import signal

from pldc_core import distributed as dist_utils
from pldc_core.run_dir import RunDir

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


class HookBase:
    """A side task of the loop. Hooks should be cheap unless their iteration has come."""

    def before_train(self, trainer: "TrainerBase") -> None: ...
    def after_step(self, trainer: "TrainerBase", metrics: dict) -> None: ...
    def after_train(self, trainer: "TrainerBase") -> None: ...


class TrainerBase:
    """The loop over steps with hooks, stop requests (SIGTERM) and the run's status file.

    Subclasses set ``run`` (a ``RunDir``), ``max_iters``, ``iter``, ``best`` and ``hooks``, and
    implement ``run_step() -> metrics``, ``phase`` and ``before_train()``.
    """

    run: RunDir
    max_iters: int
    iter: int
    best: dict
    hooks: list[HookBase]
    stop_requested: bool = False

    @property
    def phase(self) -> str:
        raise NotImplementedError

    def before_train(self) -> None:
        """Set-up that must happen just before the first step (e.g. opening the data streams)."""

    def run_step(self) -> dict:
        """One optimizer step; returns its metrics."""
        raise NotImplementedError

    def close(self) -> None:
        """Give up the run folder's lock (done when ``train`` returns or fails; the process's exit does it too)."""
        self.run.release()

    def train(self, stop_at: int | None = None) -> dict:
        """Train to ``max_iters`` (or pause after ``stop_at`` steps, with a checkpoint); returns the best eval."""
        self.before_train()
        previous_sigterm = self._install_signal_handler()
        self.write_status("running")
        for hook in self.hooks:
            hook.before_train(self)
        try:
            while self.iter < self.max_iters and not self.stop_requested:
                metrics = self.run_step()
                self.iter += 1
                if stop_at is not None and self.iter >= stop_at:
                    self.stop_requested = True
                for hook in self.hooks:
                    hook.after_step(self, metrics)
            for hook in self.hooks:
                hook.after_train(self)
            self.write_status("stopped" if self.stop_requested else "finished")
        except TrainingDiverged as exc:
            self.write_status("failed", error=str(exc))
            raise
        except BaseException as exc:
            self.write_status("failed", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if previous_sigterm is not None:
                signal.signal(signal.SIGTERM, previous_sigterm)
            self.close()
        return self.best

    def write_status(self, state: str, error: str | None = None) -> None:
        """Rewrite RUN/status.json (main process only)."""
        if dist_utils.is_main():
            self.run.write_status(state, iteration=self.iter, max_iters=self.max_iters, phase=self.phase,
                                  best=self.best, error=error)

    def _install_signal_handler(self):
        """SIGTERM asks the loop to stop after the current step; returns the handler it replaced."""
        def request_stop(signum, frame):
            log.warning("signal %s: stopping after this step (a checkpoint is saved)", signum)
            self.stop_requested = True

        try:
            return signal.signal(signal.SIGTERM, request_stop)
        except ValueError:  # not the main thread (e.g. inside a test runner thread)
            return None
