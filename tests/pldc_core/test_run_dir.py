import json
import os

import pytest

from pldc_core.run_dir import RunDir, RunDirError


def test_layout_names_every_file_of_a_run(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.config == tmp_path / "r" / "config.yaml" and run.status == tmp_path / "r" / "status.json"
    assert run.metrics.name == "metrics.jsonl" and run.evals.name == "eval.jsonl"
    assert run.checkpoints.name == "checkpoints" and run.records(1000) == tmp_path / "r" / "records" / "iter_0001000"
    assert run.clip_table.name == "clip_gt_crops.parquet" and run.curation.name == "curation"
    assert run.train_log.name == "train.log" and run.launch_file.name == "launch.json"
    assert not run.has_checkpoints()
    (run.checkpoints / "ckpt_0000001.pt").parent.mkdir(parents=True)
    (run.checkpoints / "ckpt_0000001.pt").write_bytes(b"")
    assert run.has_checkpoints()


def test_one_lock_per_run_folder(tmp_path):
    first, second = RunDir(tmp_path / "r"), RunDir(tmp_path / "r")
    first.lock()
    assert (tmp_path / "r" / ".lock").read_text() == str(os.getpid())
    with pytest.raises(RunDirError, match=f"another process \\(pid {os.getpid()}\\) is training this run"):
        second.lock()
    first.release()
    second.lock()
    second.release()


def test_status_file(tmp_path):
    run = RunDir(tmp_path)
    run.write_status("running", iteration=3, max_iters=10, phase="semi", best={"AP": 1.5, "iter": 3})
    status = json.loads(run.status.read_text())
    assert {k: status[k] for k in ("state", "iteration", "max_iters", "phase", "pid", "error")} == {
        "state": "running", "iteration": 3, "max_iters": 10, "phase": "semi", "pid": os.getpid(), "error": None}


def test_read_history_skips_a_line_cut_short_by_a_kill(tmp_path):
    from pldc_core.run_dir import read_history

    assert read_history(tmp_path) == []
    (tmp_path / "history.jsonl").write_text('{"iter": 0, "precision": "float32"}\n{"iter": 30, "prec')
    assert read_history(tmp_path) == [{"iter": 0, "precision": "float32"}]
