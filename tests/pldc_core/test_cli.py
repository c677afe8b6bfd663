"""The `pldc` command itself: its version, how warnings and results read, `pldc eval`'s output."""
from __future__ import annotations

import json
import math
import shutil
from importlib.metadata import version
from pathlib import Path

import pytest
import torch

from tests.cli_checks import assert_one_error_line, run_pldc, snapshot


@pytest.mark.parametrize("module", ["apps.cli", "pldc_core.cli"])
def test_version_is_the_installed_packages(module):
    import subprocess
    import sys

    from tests.cli_checks import ROOT

    proc = subprocess.run([sys.executable, "-m", module, "--version"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.strip() == f"pldc {version('pldc-workbench')}"


@pytest.mark.slow
def test_eval_prints_percent_and_warns_in_one_line(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    newest = run / "checkpoints" / "ckpt_0000008.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    out = tmp_path / "metrics.json"
    proc = run_pldc("eval", "--checkpoint", run, "--out", out)
    assert proc.returncode == 0
    # the damaged checkpoint is one warning line (no Python source line), then the previous one is evaluated
    assert_one_error_line(proc.stderr, "eval", "warning:", f"{newest}: corrupt or truncated checkpoint",
                          "falling back to ckpt_0000004.pt")
    metrics = json.loads(out.read_text())
    assert metrics["iteration"] == 4 and metrics["model"] == "student"  # no teacher yet at the end of burn-in
    shown = " · ".join(f"{k} {metrics[k]:.2f}%" if not math.isnan(metrics[k]) else f"{k} n/a"
                       for k in ("AP", "AP50", "AP75", "APs", "APm", "APl"))
    assert proc.stdout.strip() == (f"mask AP of the student of iteration 4 on {metrics['images']} val images of "
                                   f"'synthetic': {shown}")


@pytest.mark.slow
def test_eval_with_unreadable_val_images_is_one_line(tiny_run, tmp_path):
    from pldc_core.training.checkpoint import load_checkpoint

    val = Path(load_checkpoint(tiny_run)["config"]["data"]["data_root"]) / "synthetic" / "val"
    bad_root = tmp_path / "data"
    shutil.copytree(val.parent.parent, bad_root)
    broken = bad_root / "synthetic" / "val" / "000003.png"
    broken.write_bytes(broken.read_bytes()[:60])
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    state = load_checkpoint(run / "checkpoints" / "ckpt_0000008.pt")
    state["config"]["data"]["data_root"] = str(bad_root)  # eval reads the dataset the checkpoint names
    torch.save(state, run / "checkpoints" / "ckpt_0000008.pt")
    before = snapshot(run)
    proc = run_pldc("eval", "--checkpoint", run, "--out", tmp_path / "m.json")
    assert proc.returncode == 1
    assert_one_error_line(proc.stderr, "eval", f"{broken}: image id 3: cannot read image")
    assert snapshot(run) == before and not (tmp_path / "m.json").exists()
