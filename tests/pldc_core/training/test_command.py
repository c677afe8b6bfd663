"""`pldc train` on bad input: one line naming the file and the problem, exit 1, no traceback, and the
run folder as it was (a new run that cannot start leaves no folder behind)."""
from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

from apps.cli import main
from pldc_core.data.splits import load_split
from tests.cli_checks import ROOT, assert_one_error_line, run_pldc, snapshot

pytestmark = pytest.mark.slow

SMOKE = ROOT / "configs" / "smoke.yaml"


def _new_run_args(data_root, *extra):
    return ["train", "--config", SMOKE, f"data.data_root={data_root}", "data.percent=25", "records.enabled=false",
            "train.eval_every=100", *extra]


def _corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def test_resume_with_every_checkpoint_corrupt_is_one_line_and_changes_nothing(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    for ckpt in (run / "checkpoints").glob("ckpt_*.pt"):
        _corrupt(ckpt)
    before = snapshot(run)
    proc = run_pldc("train", "--resume", run)
    assert proc.returncode == 1
    assert_one_error_line(proc.stderr, "train", str(run), "no loadable checkpoint",
                          "ckpt_0000008.pt, ckpt_0000004.pt: corrupt or truncated checkpoint")
    assert snapshot(run) == before  # config.yaml not rewritten, the lock file's old content back

    (run / ".lock").unlink()  # a copied run without its lock file: the failed resume adds none
    before = snapshot(run)
    proc = run_pldc("train", "--resume", run, "train.max_iters=20")
    assert proc.returncode == 1 and "no loadable checkpoint" in proc.stderr
    assert snapshot(run) == before

    proc = run_pldc("eval", "--checkpoint", run)
    assert proc.returncode == 1
    assert_one_error_line(proc.stderr, "eval", str(run), "ckpt_0000008.pt, ckpt_0000004.pt: corrupt or truncated")
    assert snapshot(run) == before


def test_resume_needs_a_run_folder(tmp_path, capsys):
    not_a_run = tmp_path / "photos"
    not_a_run.mkdir()
    (not_a_run / "a.txt").write_text("mine")
    before = snapshot(not_a_run)
    assert main(["train", "--resume", str(not_a_run)]) == 1
    assert_one_error_line(capsys.readouterr().err, "train", str(not_a_run), "not a run folder (no config.yaml)")
    assert snapshot(not_a_run) == before
    assert main(["train", "--resume", str(tmp_path / "gone")]) == 1
    assert_one_error_line(capsys.readouterr().err, "train", str(tmp_path / "gone"), "no such run folder")
    assert not (tmp_path / "gone").exists()


def test_misspelled_top_level_key_names_the_file_and_the_key(tmp_path, capsys):
    config = tmp_path / "mine.yaml"
    config.write_text(f"base: {SMOKE}\ntrian:\n  lr: 0.001\n")
    assert main(["train", "--config", str(config), "--run-dir", str(tmp_path / "runs" / "x")]) == 1
    line = assert_one_error_line(capsys.readouterr().err, "train", f"{config}: unknown key(s) trian at the top level",
                                 "did you mean 'train'?")
    assert ": :" not in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("case", ["no dataset", "truncated annotations", "no such percent", "no backbone file",
                                  "corrupt backbone", "unreadable training images"])
def test_a_run_that_cannot_start_leaves_no_folder(data_root, tmp_path, case):
    weights = tmp_path / "backbone.pt"
    weights.write_bytes(b"PK\x03\x04 not really a zip")
    bad_root = tmp_path / "bad-data"
    if case == "unreadable training images":  # found only when the loader reads them, inside the loop
        shutil.copytree(data_root, bad_root)
        for image in (bad_root / "synthetic" / "train").glob("*.png"):
            _corrupt(image)
    if case == "truncated annotations":
        shutil.copytree(data_root, bad_root)
        annotations = bad_root / "synthetic" / "annotations" / "instances_train.json"
        annotations.write_text(annotations.read_text()[:2000])
    extra, expected = {
        "no dataset": ([f"data.data_root={tmp_path / 'nowhere'}"],
                       [f"{tmp_path / 'nowhere'}/synthetic/annotations/instances_train.json", "pldc data make-synthetic"]),
        "truncated annotations": ([f"data.data_root={bad_root}"],
                                  [f"{bad_root}/synthetic/annotations/instances_train.json: malformed JSON at line 1"]),
        "no such percent": (["data.percent=10"], ["synthetic.json: no split for percent 10 (available: 25)"]),
        "no backbone file": ([f"model.backbone_weights={tmp_path / 'missing.pt'}"],
                             [f"{tmp_path / 'missing.pt'}: no such weights file (model.backbone_weights)"]),
        "corrupt backbone": ([f"model.backbone_weights={weights}"],
                             [f"{weights}: not a readable weights file (model.backbone_weights)"]),
        "unreadable training images": ([f"data.data_root={bad_root}"], [f"{bad_root}/synthetic/train/", "cannot read image"]),
    }[case]
    run = tmp_path / "runs" / "new"
    proc = run_pldc(*_new_run_args(data_root, *extra, "--run-dir", run))
    assert proc.returncode == 1
    assert_one_error_line(proc.stderr, "train", *expected)
    assert not (tmp_path / "runs").exists()  # neither the run folder nor the parent made for it


def test_a_failed_start_in_a_folder_made_for_it_keeps_only_what_was_there(data_root, tmp_path):
    # The app makes the folder and its train.log before it starts `pldc train` there.
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.log").write_text("# started by the workbench\n")
    before = snapshot(run)
    proc = run_pldc(*_new_run_args(data_root, "data.percent=10", "--run-dir", run))
    assert proc.returncode == 1 and "no split for percent 10" in proc.stderr
    assert snapshot(run) == before


def test_the_suggested_split_command_works_when_copied(tmp_path, capsys):
    """A registered dataset whose registry is outside the data root: the message's command needs --registry."""
    from tests.tiny import make_tiny_dataset

    own = make_tiny_dataset(tmp_path / "own", n_train=12, n_val=4)
    registry = tmp_path / "config" / "datasets.yaml"
    registry.parent.mkdir()
    registry.write_text(f"datasets:\n  parts:\n    train_json: {own}/synthetic/annotations/instances_train.json\n"
                        f"    train_images: {own}/synthetic/train\n"
                        f"    val_json: {own}/synthetic/annotations/instances_val.json\n"
                        f"    val_images: {own}/synthetic/val\n")
    data_root = tmp_path / "data"
    data_root.mkdir()
    args = ["train", "--config", str(SMOKE), "data.dataset=parts", f"data.data_root={data_root}",
            f"data.registry_file={registry}", "data.percent=50", "data.split_seed=1", "--run-dir", str(tmp_path / "run")]
    assert main(args) == 1
    line = assert_one_error_line(capsys.readouterr().err, "train", "split file not found")
    command = line.split("`")[1]
    assert command.startswith("pldc data split ") and "--registry" in command
    assert main(shlex.split(command)[1:]) == 0  # what a user copies, less the program name
    labeled, unlabeled = load_split(data_root / "splits" / "parts.json", 50, 1)
    assert len(labeled) == 6 and len(unlabeled) == 6
    assert not (tmp_path / "run").exists()


def test_split_options_are_explained(capsys):
    with pytest.raises(SystemExit):
        main(["data", "split", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--data-root DATA_ROOT folder the built-in datasets live under" in text
    assert "--registry REGISTRY dataset registry YAML that names --dataset" in text


def test_train_says_what_it_trains_on_what_data_and_where(data_root, tmp_path):
    import json

    run = tmp_path / "runs" / "mine"
    proc = run_pldc(*_new_run_args(data_root, "--run-dir", run, "--stop-at", "1"))
    assert proc.returncode == 0, proc.stderr
    labeled, unlabeled = load_split(data_root / "splits" / "synthetic.json", 25, 0)
    val = json.loads((data_root / "synthetic" / "annotations" / "instances_val.json").read_text())["images"]
    lines = proc.stdout.splitlines()
    assert lines[0] == f"pldc train: new run 'smoke' in {run} on cpu"
    assert lines[1].startswith("  model: Mask2Former, tiny ResNet backbone from scratch, 8 queries, 128 px crops")
    assert lines[2].startswith("  steps: 8: 4 supervised burn-in steps, then 4 PL-DC steps (DDTF")
    assert "; lr 0.0005 (poly decay, 200 warm-up steps); checkpoint every" in lines[2]
    assert lines[3] == (f"  data: 'synthetic' ({data_root}/synthetic/annotations/instances_train.json): "
                        f"{len(labeled)} labeled + {len(unlabeled)} unlabeled train images (25% split, seed 0), "
                        f"{len(val)} val images")
    assert lines[-1] == f"run paused at iteration 1: {run} (not evaluated yet)"
    proc = run_pldc("train", "--resume", run, "--stop-at", "2", "pldc.enabled=false")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"pldc train: run 'smoke' resumed at iteration 1 in {run} on cpu"
    assert lines[2].startswith("  steps: 8: 8 supervised steps (pldc.enabled=false)")
    assert f"{len(labeled)} labeled train images" in lines[3]
