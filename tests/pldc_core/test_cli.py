"""The `pldc` command itself: its version, how warnings and results read, `pldc eval`'s output."""
from __future__ import annotations

import json
import math
import shutil
from importlib.metadata import version

import pytest

from tests.cli_checks import assert_one_error_line, run_pldc


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
