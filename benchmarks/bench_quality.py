"""Quality on the embedded benchmark at 5% labels: supervised vs PL-DC over split seeds, and the ablations.

    .venv/bin/python benchmarks/bench_quality.py [--out runs/q30b3000] [--seeds 0 1 2]
        [--ablation-seeds 0] [--ablation-iters N] [--ablations NAME ...] [--eval-at N ...] [--jobs 2]
        [--main-variants supervised pldc] [--orders T ...]
        [--thresholds paper|best-f1]
        [--config benchmarks/quality-30min-b3000.yaml] [--results benchmarks/results/quality.md] [--title TEXT]

Per split seed S (``data.split_seed=S train.seed=S``):
  1. ``burn_in``: supervised training to ``train.burn_in_iters``, with pseudo-label records;
  2. thresholds: the paper's (c_t 0.85, m_t 0.9, s_t 0.765, as in the config) by default, the same
     on every seed and dataset; ``--thresholds best-f1`` takes instead the best-F1 DDTF pair and
     coupled ``s_t`` in the what-if grids on the burn-in's last records (``pick_thresholds.py``,
     which says what that costs). Both points' what-if figures are kept in OUT/seedS/thresholds.json;
  3. the variants, each a copy of the burn-in resumed with its overrides to ``train.max_iters``
     (same data order, schedule and budget): ``supervised`` and ``pldc`` on every seed; on the
     ablation seeds also ``coupled`` (the baseline the paper's modules are added to),
     ``pldc_no_ddtf``, ``pldc_no_dicc``, ``pldc_no_pmua`` and ``pldc_box_crop`` (DICC cropping
     the whole mask's box, as the paper, instead of the config's ``pldc.dicc_crop``);
  4. each variant's last checkpoint evaluated on all val images (teacher and student).
``--ablation-iters N`` trains the ablation variants to iteration N only (fewer semi-supervised
steps, same schedule: the poly decay still runs to ``max_iters``), and evaluates the supervised and
PL-DC runs of the ablation seeds at N too, so the ablation table compares all variants at N.
``--eval-at N ...`` evaluates the supervised and PL-DC runs of every seed at each N on the way
as well: a learning curve, one table per iteration.
``--orders T ...`` trains the main variants of every seed again from the same burn-in with
``train.seed=T`` (``supervised_orderT``, ``pldc_orderT``): the same split and schedule, the labeled
and unlabeled batches drawn in another order. One run's gain moves by several points with the order
alone, so these replicates say how much of a difference between runs is noise.
Then ``quality_table.py`` writes benchmarks/results/quality.md (``--results``: another file, e.g. for
another dataset's config).

Up to ``--jobs`` trainings run at once, each single-threaded (two runs of one thread each use 2
cores far better than two of two threads). Finished steps are skipped, so running the command
again after an interruption picks up where it stopped (an interrupted training resumes from its
last checkpoint). Each step's output goes to OUT/seedS/<step>.log.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pldc_core.config import load_config  # noqa: E402
from pldc_core.training.checkpoint import latest_checkpoint  # noqa: E402
from benchmarks.quality_table import order_run_name, variant_of  # noqa: E402

PLDC = str(ROOT / ".venv" / "bin" / "pldc")
PY = str(ROOT / ".venv" / "bin" / "python")

MAIN_VARIANTS = {"supervised": ["pldc.enabled=false"], "pldc": []}
ABLATIONS = {
    "coupled": ["pldc.filter=coupled", "pldc.dicc=false", "pldc.pmua=false"],
    "pldc_no_ddtf": ["pldc.filter=coupled"],
    "pldc_no_dicc": ["pldc.dicc=false"],
    "pldc_no_pmua": ["pldc.pmua=false"],
    "pldc_box_crop": ["pldc.dicc_crop=box"],
}


def order_variants(main: list[str], orders: list[int]) -> dict[str, list[str]]:
    """The main variants again with the batches in other orders: ``<name>_order<T>`` -> overrides."""
    return {order_run_name(name, order): [*MAIN_VARIANTS[name], f"train.seed={order}"]
            for order in orders for name in main}


def _run(cmd: list[str], log: Path, threads: int | None) -> None:
    env = dict(os.environ, PLDC_NO_PROGRESS="1")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed (exit {proc.returncode}); see {log}")


def _ckpt(run: Path, iteration: int) -> Path:
    return run / "checkpoints" / f"ckpt_{iteration:07d}.pt"


class Bench:
    def __init__(self, args):
        self.out = Path(args.out)
        self.config = args.config
        cfg = load_config(args.config)
        self.burn, self.max = cfg.train.burn_in_iters, cfg.train.max_iters
        self.threads = 1 if args.jobs > 1 else None
        self.threshold_rule = args.thresholds
        # keys that act only after burn-in: the benchmark's config decides them for every variant
        # (a burn-in's saved config may predate them, or come from a config without them)
        self.semi_overrides = [f"pldc.dicc_crop={cfg.pldc.dicc_crop}"]
        if not cfg.train.labeled_strong_view:  # then the strong view (its blur) acts only on unlabeled images
            low, high = cfg.data.blur_sigma
            self.semi_overrides.append(f"data.blur_sigma=[{low:g},{high:g}]")
        if cfg.pldc.ignore_c is not None:
            self.semi_overrides.append(f"pldc.ignore_c={cfg.pldc.ignore_c:g}")

    def burn_in(self, seed: int) -> None:
        run = self.out / f"seed{seed}" / "burn_in"
        log = run.parent / "burn_in.log"
        self.check_schedule(run)
        if not _ckpt(run, self.burn).exists():
            if (run / "checkpoints").is_dir():
                _run([PLDC, "train", "--resume", str(run), "--stop-at", str(self.burn)], log, self.threads)
            else:
                _run([PLDC, "train", "--config", self.config, "--run-dir", str(run), "--stop-at", str(self.burn),
                      "name=burn_in", f"data.split_seed={seed}", f"train.seed={seed}"], log, self.threads)
        _require(run, self.burn)
        for model in _models("burn_in", run):
            if not (run / f"final_eval_{model}.json").exists():
                _run([PLDC, "eval", "--checkpoint", str(run), "--model", model,
                      "--out", str(run / f"final_eval_{model}.json")], log, self.threads)

    def check_schedule(self, run: Path) -> None:
        """Refuse a burn-in left by another schedule in the output folder (its lr decayed over other steps)."""
        saved = run / "config.yaml"
        if not saved.exists():
            return
        t = load_config(saved).train
        if (t.burn_in_iters, t.max_iters) != (self.burn, self.max):
            raise RuntimeError(f"{run} was trained for another schedule (burn-in {t.burn_in_iters}, max_iters "
                               f"{t.max_iters}; {self.config} says {self.burn}, {self.max}): use another --out")

    def thresholds(self, seed: int) -> list[str]:
        dest = self.out / f"seed{seed}" / "thresholds.json"
        if not dest.exists():
            _run([PY, "benchmarks/pick_thresholds.py", str(dest.parent / "burn_in"), "--out", str(dest)],
                 dest.parent / "thresholds.log", None)
        if self.threshold_rule == "paper":
            return []
        chosen = json.loads(dest.read_text())["chosen"]
        return [f"pldc.{k}={v:g}" for k, v in chosen.items()]

    def variant(self, seed: int, name: str, overrides: list[str], stop: int | None = None,
                also_at: list[int] = ()) -> None:
        """Train a copy of the seed's burn-in with ``overrides`` to ``stop`` (default ``max_iters``),
        then evaluate that checkpoint on all val images. ``also_at``: stop at each of these first and
        evaluate those checkpoints too (training keeps only its last few checkpoints, so they are
        evaluated on the way; one a finished run no longer holds is skipped, with a line that says so)."""
        stop = stop or self.max
        base = self.out / f"seed{seed}"
        run, log = base / name, base / f"{name}.log"
        for target in sorted({a for a in also_at if a < stop}) + [stop]:
            if all(self.eval_path(run, m, target).exists() for m in _models(name, run)):
                continue
            _wait_unlocked(run)
            if target < stop and not _ckpt(run, target).exists() and _last_iteration(run) > target:
                print(f"seed{seed}/{name}: no checkpoint of iteration {target} left (the run is past it); "
                      "not evaluated there", flush=True)
                continue
            if not _ckpt(run, target).exists():
                if run.is_dir():  # interrupted earlier: its saved config holds the overrides
                    _run([PLDC, "train", "--resume", str(run), "--stop-at", str(target)], log, self.threads)
                else:
                    tmp = base / f"{name}.tmp"
                    shutil.rmtree(tmp, ignore_errors=True)
                    shutil.copytree(base / "burn_in", tmp)
                    for stale in tmp.glob("final_eval_*.json"):
                        stale.unlink()
                    tmp.rename(run)
                    _run([PLDC, "train", "--resume", str(run), "--stop-at", str(target), f"name={name}",
                          *self.thresholds(seed), *self.semi_overrides, *overrides], log, self.threads)
            _require(run, target)
            self.evaluate(run, name, target, log)

    def eval_path(self, run: Path, model: str, iteration: int) -> Path:
        """``final_eval_<model>.json`` for the full budget; ``final_eval_<model>_at<iteration>.json`` else."""
        suffix = "" if iteration == self.max else f"_at{iteration}"
        return run / f"final_eval_{model}{suffix}.json"

    def evaluate(self, run: Path, name: str, iteration: int, log: Path) -> None:
        """Evaluate a run's checkpoint at ``iteration`` on all val images (teacher and student)."""
        _wait_unlocked(run)
        for model in _models(name, run):
            dest = self.eval_path(run, model, iteration)
            if not dest.exists():
                _run([PLDC, "eval", "--checkpoint", str(_ckpt(run, iteration)), "--model", model,
                      "--out", str(dest)], log, self.threads)


def _require(run: Path, iteration: int) -> None:
    """A training that exits without its checkpoint at ``iteration`` was paused early (e.g. by a SIGTERM):
    nothing of it may be evaluated or built on yet."""
    if not _ckpt(run, iteration).exists():
        raise RuntimeError(f"{run} stopped before iteration {iteration}; run the command again to resume it")


def _last_iteration(run: Path) -> int:
    """The iteration of a run's latest checkpoint (0 without one)."""
    latest = latest_checkpoint(run)
    return int(latest.stem.removeprefix("ckpt_")) if latest is not None else 0


def _models(name: str, run: Path) -> tuple[str, ...]:
    """The models of a run to evaluate. The burn-in and supervised-only (in any data order) have a
    teacher only where they keep an EMA (train.ema_from_start): supervised-only's EMA, a baseline too."""
    if variant_of(name) not in ("burn_in", "supervised"):
        return ("teacher", "student")
    saved = run / "config.yaml"
    return ("teacher", "student") if saved.exists() and load_config(saved).train.ema_from_start else ("student",)


def _wait_unlocked(run: Path) -> None:
    """Wait while another process holds the run's lock (e.g. a training left by an earlier call)."""
    lock = run / ".lock"
    if not lock.exists():
        return
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        fcntl.flock(f, fcntl.LOCK_UN)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/q30b3000")
    parser.add_argument("--config", default="benchmarks/quality-30min-b3000.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ablation-seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--thresholds", choices=("paper", "best-f1"), default="paper",
                        help="the config's (paper's) thresholds, or the best-F1 point of the burn-in's what-if grid")
    parser.add_argument("--ablation-iters", type=int, default=None,
                        help="train the ablation variants to this iteration only (default: max_iters); supervised "
                             "and PL-DC of the ablation seeds are also evaluated there")
    parser.add_argument("--eval-at", type=int, nargs="+", default=[],
                        help="also evaluate supervised-only and PL-DC on all val images at these iterations, "
                             "on the way to max_iters (a learning curve)")
    parser.add_argument("--main-variants", nargs="+", choices=list(MAIN_VARIANTS), default=list(MAIN_VARIANTS),
                        help="which of the main variants to run on every seed (default both; e.g. only pldc to "
                             "extend a seed's PL-DC curve whose supervised-only run is measured elsewhere)")
    parser.add_argument("--orders", type=int, nargs="+", default=[], metavar="T",
                        help="also train the main variants of every seed with train.seed=T (other data orders, "
                             "same split): how much one run moves by chance")
    parser.add_argument("--ablations", nargs="+", choices=list(ABLATIONS), default=list(ABLATIONS),
                        help="which ablation variants to run on the ablation seeds (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once, each single-threaded if > 1")
    parser.add_argument("--results", default="benchmarks/results/quality.md",
                        help="the markdown file quality_table.py writes (another dataset: another file)")
    parser.add_argument("--title", default=None, help="its title (default: quality_table.py's)")
    args = parser.parse_args()
    bench = Bench(args)
    stop = args.ablation_iters
    start = time.perf_counter()

    # Burn-ins first (every variant of a seed waits for its own), then the variants, main ones first.
    tasks = []
    for seed in args.seeds:
        variants = {name: MAIN_VARIANTS[name] for name in args.main_variants}
        variants.update(order_variants(args.main_variants, args.orders))
        if seed in args.ablation_seeds:
            variants.update({name: ABLATIONS[name] for name in args.ablations})
        for name, overrides in variants.items():
            at = stop if name in ABLATIONS else None
            # the main variants of an ablation seed are also evaluated where the ablations stop
            also = [stop] if stop and name in MAIN_VARIANTS and seed in args.ablation_seeds else []
            if name in MAIN_VARIANTS:
                also = also + args.eval_at
            tasks.append((name, seed, lambda s=seed, n=name, o=overrides, a=at, b=also: bench.variant(s, n, o, a, b)))
    tasks.sort(key=lambda t: (t[0] not in MAIN_VARIANTS, t[1]))

    burned: dict[int, Future] = {}
    failures = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for seed in args.seeds:
            burned[seed] = pool.submit(bench.burn_in, seed)
        queue = list(tasks)
        running: dict[Future, str] = {f: f"seed{s}/burn_in" for s, f in burned.items()}
        while running or queue:
            # a variant is submitted once its seed's burn-in is done; at most --jobs at a time run
            for task in list(queue):
                name, seed, fn = task
                if not burned[seed].done():
                    continue
                if burned[seed].exception() is not None:
                    queue.remove(task)
                    failures.append(f"seed{seed}/{name}: skipped, its burn-in failed")
                elif sum(not f.done() for f in running) < args.jobs:
                    queue.remove(task)
                    running[pool.submit(fn)] = f"seed{seed}/{name}"
            if not running:
                break
            done, _ = wait(set(running), return_when=FIRST_COMPLETED, timeout=5)
            for f in done:
                label = running.pop(f)
                if f.exception() is not None:
                    failures.append(f"{label}: {f.exception()}")
                else:
                    print(f"[{(time.perf_counter() - start) / 60:.1f} min] {label} done", flush=True)
    table = [PY, "benchmarks/quality_table.py", str(bench.out), "--results", args.results, "--config", args.config,
             "--command", shlex.join([".venv/bin/python", "benchmarks/bench_quality.py"] + sys.argv[1:])]
    subprocess.run(table + (["--title", args.title] if args.title else []), cwd=ROOT, check=False)
    print(f"bench_quality: {(time.perf_counter() - start) / 60:.1f} min wall clock in this call")
    for failure in failures:
        print(f"bench_quality: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
