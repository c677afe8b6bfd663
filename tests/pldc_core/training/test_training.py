"""End-to-end engine tests on a tiny generated dataset: both phases, resume, NaN, bad config, DDP."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pldc_core.config import load_config
from pldc_core.run_dir import RunDirError, read_history
from pldc_core.training.loop import TrainingDiverged
from pldc_core.training.trainer import Trainer
from tests.tiny import smoke_config

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


def smoke_cfg(data_root, *extra):
    return smoke_config(data_root, *extra)


def test_burn_in_then_pldc_end_to_end(data_root, tmp_path):
    cfg = smoke_cfg(data_root)
    run = tmp_path / "run"
    Trainer(cfg, run).train()
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["iter"] for l in lines] == list(range(1, 9))
    assert {l["phase"] for l in lines[:4]} == {"burn_in"} and {l["phase"] for l in lines[4:]} == {"semi"}
    semi = lines[4:]
    assert all(l["n_queries"] == 2 * cfg.model.num_queries for l in semi)
    assert all(l["n_kept"] == l["n_kept_ddtf"] > 0 for l in semi)  # thresholds 0: DDTF keeps every query
    assert all(l["loss_unsup"] > 0 and l["loss"] > l["loss_sup"] for l in semi)
    assert all(set(l) >= {"lr", "sec_per_iter", "loss_sup", "loss_unsup", "n_kept_coupled"} for l in lines)
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == ["ckpt_0000004.pt", "ckpt_0000008.pt"]
    evals = [json.loads(l) for l in (run / "eval.jsonl").read_text().splitlines()]
    assert evals[-1]["iter"] == 8 and evals[-1]["model"] == "teacher"
    assert {"AP", "AP50", "AP75", "APs", "APm", "APl"} <= set(evals[-1])
    per_class = evals[-1]["AP_per_class"]  # every class of the dataset; COCO's AP is their mean
    val = json.loads((Path(data_root) / "synthetic" / "annotations" / "instances_val.json").read_text())
    assert sorted(per_class) == sorted(c["name"] for c in val["categories"])
    defined = [v for v in per_class.values() if not math.isnan(v)]
    assert defined and sum(defined) / len(defined) == pytest.approx(evals[-1]["AP"])
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert load_config(run / "config.yaml") == cfg
    from pldc_core.records.store import list_record_iterations, load_records

    assert list_record_iterations(run) == [4, 8]
    rec = load_records(run, 8)
    assert len(rec.queries) == 4 * cfg.model.num_queries and rec.manifest["phase"] == "semi"


def _smoke_run_with(data_root, run_dir, override: str, summary_says: str):
    """A smoke run with one option on: its summary names it, every PL-DC step keeps pseudo-labels
    and has an unsupervised loss. Returns the config and the records of its last checkpoint."""
    from pldc_core.records.store import load_records

    cfg = smoke_cfg(data_root, override)
    trainer = Trainer(cfg, run_dir)
    assert summary_says in trainer.summary()
    trainer.train()
    semi = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()][4:]
    assert all(l["n_kept"] > 0 and l["loss_unsup"] > 0 for l in semi)
    return cfg, load_records(run_dir, 8)


def test_a_stride_2_mask_head_trains_evaluates_and_records(data_root, tmp_path):
    cfg, rec = _smoke_run_with(data_root, tmp_path / "run", "model.mask_stride=2", "final masks at stride 2")
    assert json.loads((tmp_path / "run" / "eval.jsonl").read_text().splitlines()[-1])["iter"] == 8
    assert len(rec.queries) == 4 * cfg.model.num_queries and rec.queries["m"].between(0, 1).all()


def test_a_teacher_that_also_labels_the_mirror_trains_and_records(data_root, tmp_path):
    cfg, rec = _smoke_run_with(data_root, tmp_path / "run", "pldc.teacher_flip=true",
                               "teacher on each image and its mirror")
    assert rec.manifest["teacher_flip"] is True and len(rec.queries) == 4 * cfg.model.num_queries


def test_a_run_semi_supervised_from_its_first_step_records_iteration_0(data_root, tmp_path):
    from pldc_core.records.store import list_record_iterations, load_records

    args = ("train.burn_in_iters=0", "train.max_iters=4", "train.checkpoint_every=4", "train.eval_every=100")
    Trainer(smoke_cfg(data_root, *args), tmp_path / "run").train()
    assert list_record_iterations(tmp_path / "run") == [0, 4]
    start = load_records(tmp_path / "run", 0)
    assert start.manifest["phase"] == "semi" and len(start.queries) == 4 * 8  # 4 images x the smoke model's 8 queries
    # recording it leaves the training itself unchanged
    Trainer(smoke_cfg(data_root, *args, "records.enabled=false"), tmp_path / "plain").train()
    losses = [[json.loads(l)["loss"] for l in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
              for name in ("run", "plain")]
    assert losses[0] == losses[1]


def test_teacher_is_the_ema_of_the_student(data_root, tmp_path):
    from pldc_core.training.checkpoint import load_checkpoint

    cfg = smoke_cfg(data_root, "train.max_iters=5", "train.checkpoint_every=4", "train.ema_alpha=0.5",
                    "records.enabled=false", "train.eval_every=100")
    Trainer(cfg, tmp_path / "run").train()
    s4 = load_checkpoint(tmp_path / "run" / "checkpoints" / "ckpt_0000004.pt")
    s5 = load_checkpoint(tmp_path / "run" / "checkpoints" / "ckpt_0000005.pt")
    assert s4["teacher"] is None and s5["teacher"] is not None
    # teacher = copy of the burned-in student, then one EMA step towards the new student
    name = next(k for k, v in s5["student"].items() if v.is_floating_point() and "encoder" in k and v.ndim == 4)
    expected = 0.5 * s4["student"][name] + 0.5 * s5["student"][name]
    torch.testing.assert_close(s5["teacher"][name], expected)


def test_summary_names_the_thresholds_of_the_filter_in_use(data_root, tmp_path):
    ddtf = Trainer(smoke_cfg(data_root, "pldc.c_t=0.8", "pldc.m_t=0.7"), tmp_path / "ddtf").summary()
    coupled = Trainer(smoke_cfg(data_root, "pldc.filter=coupled", "pldc.s_t=0.6"), tmp_path / "coupled").summary()
    assert "PL-DC steps (DDTF c_t 0.8 / m_t 0.7" in ddtf
    assert "PL-DC steps (COUPLED s_t 0.6" in coupled and "c_t" not in coupled


def test_ignore_c_adds_ignore_targets_to_the_unsupervised_loss(data_root, tmp_path):
    # c_t 1 keeps nothing (an untrained teacher is never certain), so every likely object of the
    # teacher becomes an ignore target
    args = ("pldc.c_t=1.0", "pldc.m_t=0.0", "train.max_iters=6", "records.enabled=false", "train.eval_every=100")
    trainer = Trainer(smoke_cfg(data_root, *args, "pldc.ignore_c=0.0"), tmp_path / "ignore")
    assert "PMUA, ignore targets from c >= 0)" in trainer.summary()
    trainer.train()
    Trainer(smoke_cfg(data_root, *args), tmp_path / "plain").train()
    lines = {n: [json.loads(l) for l in (tmp_path / n / "metrics.jsonl").read_text().splitlines()][4:]
             for n in ("ignore", "plain")}
    assert all(l["n_kept"] == 0 and l["n_ignored"] > 0 for l in lines["ignore"])
    assert all("n_ignored" not in l for l in lines["plain"])
    # nothing kept: without ignore targets every query is taught "no object"; with them the
    # matched queries are not, so the unsupervised class loss differs
    first = [lines[n][0]["unsup_loss_ce"] for n in ("ignore", "plain")]
    assert first[0] != pytest.approx(first[1])
    assert lines["ignore"][0]["unsup_loss_mask"] == 0.0


def test_ema_from_start_keeps_and_evaluates_an_ema_model_in_a_supervised_run(data_root, tmp_path):
    from pldc_core.training.checkpoint import load_checkpoint

    cfg = smoke_cfg(data_root, "pldc.enabled=false", "train.ema_from_start=true", "train.max_iters=3",
                    "train.burn_in_iters=3", "train.checkpoint_every=1", "train.ema_alpha=0.5", "records.enabled=false",
                    "train.eval_every=3", "data.eval_images=2")
    trainer = Trainer(cfg, tmp_path / "run")
    assert "EMA model (alpha 0.5) from the first step" in trainer.summary()
    trainer.train()
    s = [load_checkpoint(tmp_path / "run" / "checkpoints" / f"ckpt_000000{i}.pt") for i in (2, 3)]
    assert s[0]["teacher"] is not None and s[0]["phase"] == "burn_in"
    name = next(k for k, v in s[1]["student"].items() if v.is_floating_point() and "encoder" in k and v.ndim == 4)
    torch.testing.assert_close(s[1]["teacher"][name], 0.5 * s[0]["teacher"][name] + 0.5 * s[1]["student"][name])
    assert not torch.equal(s[1]["teacher"][name], s[1]["student"][name])
    evals = [json.loads(l) for l in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    assert [e["model"] for e in evals] == ["teacher"]
    # the EMA copy draws no random numbers: the student trains exactly as without it
    Trainer(smoke_cfg(data_root, "pldc.enabled=false", "train.max_iters=3", "train.burn_in_iters=3",
                      "records.enabled=false", "train.eval_every=100"), tmp_path / "plain").train()
    losses = [[json.loads(l)["loss"] for l in (tmp_path / n / "metrics.jsonl").read_text().splitlines()]
              for n in ("run", "plain")]
    assert losses[0] == losses[1]
    # a run resumed with the option from a checkpoint that has no EMA starts it there, and says so
    cfg = smoke_cfg(data_root, "pldc.enabled=false", "train.ema_from_start=true", "train.max_iters=4",
                    "train.burn_in_iters=4", "records.enabled=false", "train.ema_alpha=0.5")
    assert "EMA model (alpha 0.5) from iteration 3 on" in Trainer(cfg, tmp_path / "plain", resume=True).summary()


def test_student_from_ema_starts_pldc_from_the_burn_in_ema(data_root, tmp_path):
    from pldc_core.training.checkpoint import load_checkpoint

    # the lr falls x1e-9 at the first PL-DC step, so that step leaves the student where it started
    common = ("train.ema_from_start=true", "train.max_iters=3", "train.burn_in_iters=2", "train.checkpoint_every=1",
              "train.ema_alpha=0.5", "train.lr_schedule=step", "train.lr_steps=[2]", "train.lr_gamma=1e-9",
              "pldc.c_t=0.0", "pldc.m_t=0.0", "records.enabled=false", "train.eval_every=100")
    trainer = Trainer(smoke_cfg(data_root, *common, "train.student_from_ema=true"), tmp_path / "from_ema")
    assert "the student starts PL-DC from it (iteration 2)" in trainer.summary()
    trainer.train()
    Trainer(smoke_cfg(data_root, *common), tmp_path / "plain").train()
    ckpt = {n: [load_checkpoint(tmp_path / n / "checkpoints" / f"ckpt_000000{i}.pt") for i in (2, 3)]
            for n in ("from_ema", "plain")}
    name = next(k for k, v in ckpt["plain"][0]["student"].items()
                if v.is_floating_point() and "encoder" in k and v.ndim == 4)
    # the burn-ins are the same; at iteration 2 the EMA and the student differ
    torch.testing.assert_close(ckpt["from_ema"][0]["student"][name], ckpt["plain"][0]["student"][name])
    ema, student = ckpt["plain"][0]["teacher"][name], ckpt["plain"][0]["student"][name]
    assert (ema - student).abs().max() > 1e-6
    # after the first PL-DC step the student is the burn-in's EMA with the option, its own last weights without
    torch.testing.assert_close(ckpt["from_ema"][1]["student"][name], ema, atol=1e-8, rtol=0)
    torch.testing.assert_close(ckpt["plain"][1]["student"][name], student, atol=1e-8, rtol=0)


def test_amp_cpu_trains_the_student_in_bfloat16_autocast(data_root, tmp_path):
    cfg = smoke_cfg(data_root, "train.amp_cpu=true", "train.device=cpu", "train.max_iters=3",
                    "train.burn_in_iters=1", "pldc.c_t=0.0", "pldc.m_t=0.0", "records.enabled=false",
                    "train.eval_every=100")
    trainer = Trainer(cfg, tmp_path / "bf16")
    assert "bfloat16 autocast on the CPU" in trainer.summary()
    with trainer._autocast():
        out = trainer.student(torch.zeros(1, 3, cfg.data.image_size, cfg.data.image_size))
    assert out.class_logits.dtype == torch.bfloat16
    trainer.train()
    Trainer(smoke_cfg(data_root, "train.device=cpu", "train.max_iters=3", "train.burn_in_iters=1", "pldc.c_t=0.0",
                      "pldc.m_t=0.0", "records.enabled=false", "train.eval_every=100"), tmp_path / "fp32").train()
    lines = {n: [json.loads(l) for l in (tmp_path / n / "metrics.jsonl").read_text().splitlines()]
             for n in ("bf16", "fp32")}
    assert [m["phase"] for m in lines["bf16"]] == ["burn_in", "semi", "semi"]
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in lines["bf16"])
    # the same data and initial weights: losses close to float32's, but not the same numbers
    first = [lines[n][0]["loss"] for n in ("bf16", "fp32")]
    assert first[0] != first[1] and first[0] == pytest.approx(first[1], rel=0.05)
    # each run's history says in which precision its steps were trained, and where
    for name, precision in (("bf16", "bfloat16"), ("fp32", "float32")):
        (entry,) = read_history(tmp_path / name)
        assert (entry["iter"], entry["precision"], entry["device"]) == (0, precision, "cpu")
        assert entry["threads"] == torch.get_num_threads() and entry["processes"] == 1


@pytest.mark.parametrize("native", [True, False])
def test_amp_cpu_auto_takes_bfloat16_only_where_the_cpu_computes_it(data_root, tmp_path, monkeypatch, native):
    from pldc_core.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: native)
    cfg = smoke_cfg(data_root, "train.amp_cpu=auto", "train.device=cpu", "records.enabled=false")
    trainer = Trainer(cfg, tmp_path / "run")
    with trainer._autocast():
        out = trainer.student(torch.zeros(1, 3, cfg.data.image_size, cfg.data.image_size))
    assert out.class_logits.dtype == (torch.bfloat16 if native else torch.float32)
    summary = trainer.summary()
    assert ("bfloat16 autocast on the CPU" in summary) == native
    assert ("float32 (train.amp_cpu auto: this CPU has no native bfloat16)" in summary) == (not native)


def _train_cli(*args, env_extra=None):
    env = {**os.environ, "PLDC_NO_PROGRESS": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "pldc_core.cli", "train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_run_resumes_and_matches_an_uninterrupted_one(data_root, tmp_path):
    args = ["--config", str(ROOT / "configs" / "smoke.yaml"), f"data.data_root={data_root}", "data.percent=25",
            "pldc.c_t=0.0", "pldc.m_t=0.0", "train.checkpoint_every=2", "records.enabled=false",
            "train.eval_every=100", "train.max_iters=8"]
    full = _train_cli(*args, "--run-dir", str(tmp_path / "full"))
    assert full.wait(timeout=600) == 0, full.stdout.read()

    killed = _train_cli(*args, "--run-dir", str(tmp_path / "killed"))
    ckpt = tmp_path / "killed" / "checkpoints" / "ckpt_0000006.pt"
    deadline = time.time() + 600
    while not ckpt.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert ckpt.exists()
    # as if an earlier resume had been killed too, before its first checkpoint: its entry is replaced
    from pldc_core.training.checkpoint import latest_checkpoint, load_checkpoint

    start = int(latest_checkpoint(tmp_path / "killed").stem.removeprefix("ckpt_"))
    (first,) = read_history(tmp_path / "killed")
    with open(tmp_path / "killed" / "history.jsonl", "a") as f:
        f.write(json.dumps({**first, "iter": start}) + "\n")
    resumed = _train_cli("--resume", str(tmp_path / "killed"))
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read()
    assert [e["iter"] for e in read_history(tmp_path / "killed")] == [0, start]

    a = load_checkpoint(tmp_path / "full")
    b = load_checkpoint(tmp_path / "killed")
    assert a["iteration"] == b["iteration"] == 8
    for key in ("student", "teacher"):
        for name, tensor in a[key].items():
            torch.testing.assert_close(b[key][name], tensor, msg=f"{key}.{name} differs after resume")
    iters = [json.loads(l)["iter"] for l in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert iters == list(range(1, 9))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_root, tmp_path, monkeypatch):
    cfg = smoke_cfg(data_root, "records.enabled=false", "train.eval_every=100", "train.checkpoint_every=2")
    trainer = Trainer(cfg, tmp_path / "run")
    original = trainer.criterion.forward

    def poisoned(*args, **kwargs):
        out = original(*args, **kwargs)
        if trainer.iter >= 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(trainer.criterion, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match="iteration 4: the loss is nan"):
        trainer.train()
    last = json.loads((tmp_path / "run" / "checkpoints" / "last.json").read_text())
    assert "0000002" in json.dumps(last)
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "failed" and "nan" in status["error"]


def test_nan_loss_before_the_first_checkpoint_leaves_no_folder(data_root, tmp_path, monkeypatch):
    cfg = smoke_cfg(data_root, "records.enabled=false", "train.eval_every=100")
    trainer = Trainer(cfg, tmp_path / "runs" / "run")
    original = trainer.criterion.forward

    def poisoned(*args, **kwargs):
        out = original(*args, **kwargs)
        out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(trainer.criterion, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match="iteration 1: the loss is nan .* no checkpoint was saved yet"):
        trainer.train()
    assert not (tmp_path / "runs").exists()


def test_cli_refuses_bad_config_and_missing_dataset(data_root, tmp_path):
    bad = _train_cli("--config", str(ROOT / "configs" / "smoke.yaml"), "pldc.c_t=1.2")
    out = bad.communicate(timeout=300)[0]
    assert bad.returncode == 1 and "pldc.c_t: must be in [0, 1]" in out and "Traceback" not in out
    missing = _train_cli("--config", str(ROOT / "configs" / "smoke.yaml"), f"data.data_root={tmp_path}/none")
    out = missing.communicate(timeout=300)[0]
    assert missing.returncode == 1 and "Traceback" not in out and str(tmp_path / "none") in out


def test_existing_run_is_not_overwritten(data_root, tmp_path):
    cfg = smoke_cfg(data_root, "train.max_iters=2", "train.checkpoint_every=2", "records.enabled=false",
                    "train.eval_every=100", "train.burn_in_iters=2")
    Trainer(cfg, tmp_path / "run").train()
    with pytest.raises(RunDirError, match="resume it with"):
        Trainer(cfg, tmp_path / "run")


def test_two_process_ddp_keeps_ranks_in_sync(data_root, tmp_path):
    env = {**os.environ, "PLDC_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           str(Path(__file__).with_name("ddp_worker.py")), str(data_root), str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    assert a["iteration"] == b["iteration"] == 6
    for key in ("student", "teacher"):
        for name, tensor in a[key].items():
            torch.testing.assert_close(b[key][name], tensor, msg=f"{key}.{name} differs between ranks")
    # the two ranks saw different images (sharded), and the evaluation covered every val image once
    assert a["seen"] and b["seen"] and not set(a["seen"]) & set(b["seen"])
    evals = [json.loads(l) for l in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    assert len(evals) == 1 and evals[0]["iter"] == 6
    # the checkpoint keeps each rank's RNG, and a resume gives each rank back its own
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "ckpt_0000006.pt", weights_only=False)
    per_rank = ckpt["rng_per_rank"]
    assert len(per_rank) == 2 and not torch.equal(per_rank[0]["torch"], per_rank[1]["torch"])
    assert torch.equal(a["rng_after_resume"], per_rank[0]["torch"])
    assert torch.equal(b["rng_after_resume"], per_rank[1]["torch"])


def test_dicc_runs_in_training_and_in_the_records(data_root, tmp_path):
    """DICC's plumbing with a tiny random CLIP the test builds (no real weights exist here)."""
    import math

    from pldc_core.records.store import load_records
    from tests.tiny import tiny_clip_weights

    weights = tiny_clip_weights(tmp_path, "pldc-tiny-train-clip")
    cfg = smoke_cfg(data_root, "pldc.dicc=true", "pldc.clip_model=pldc-tiny-train-clip",
                    f"pldc.clip_weights={weights}", "train.eval_every=100")
    Trainer(cfg, tmp_path / "run").train()
    semi = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][4:]
    # w = 0.25 (cos(pi t / T) + 1) over the semi-supervised phase (T = 4 steps here)
    assert [l["dicc_w"] for l in semi] == pytest.approx([0.25 * (math.cos(math.pi * t / 4) + 1) for t in range(4)])
    assert all(l["n_dicc_changed"] is not None and 0 <= l["n_dicc_changed"] <= l["n_kept"] for l in semi)
    rec = load_records(tmp_path / "run", 8)
    assert rec.manifest["dicc"]["enabled"] is True
    kept = rec.queries[rec.queries["keep_ddtf"]]
    assert len(kept) and (kept["corrected_class"] >= 0).all() and kept["clip_top5_probs"].notna().all()
    assert (rec.queries.loc[~rec.queries["keep_ddtf"], "corrected_class"] == -1).all()


def test_dicc_partial_labels_run_clip_on_every_pseudo_label_and_count_the_disputed_ones(data_root, tmp_path):
    from tests.tiny import tiny_clip_weights

    weights = tiny_clip_weights(tmp_path, "pldc-tiny-train-clip")
    cfg = smoke_cfg(data_root, "pldc.dicc=true", "pldc.clip_model=pldc-tiny-train-clip", "pldc.dicc_partial=true",
                    f"pldc.clip_weights={weights}", "train.eval_every=100", "records.enabled=false")
    trainer = Trainer(cfg, tmp_path / "run")
    assert "where CLIP names another class, either class is taught" in trainer.summary()
    trainer.train()
    semi = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][4:]
    assert all(0 <= l["n_dicc_partial"] <= l["n_kept"] for l in semi)
    # a random CLIP disputes some of the teacher's classes
    assert sum(l["n_dicc_partial"] for l in semi) > 0 and all(l["loss_unsup"] > 0 for l in semi)


def test_dicc_mask_pool_with_class_descriptions_trains(data_root, tmp_path):
    """The mask_pool variant in a training run, with a tiny random ConvNeXt CLIP and a descriptions file."""
    from pldc_core.method.mask_pool import MaskPoolClassifier
    from pldc_core.records.store import load_records
    from tests.tiny import TINY_CONVNEXT_CLIP_CFG, tiny_clip_weights

    weights = tiny_clip_weights(tmp_path, "pldc-tiny-pool-clip", TINY_CONVNEXT_CLIP_CFG)
    descriptions = tmp_path / "classes.json"
    descriptions.write_text(json.dumps({"disk": ["a round disk", "a filled circle"], "ring": ["a ring"]}))
    cfg = smoke_cfg(data_root, "pldc.dicc=true", "pldc.dicc_mode=mask_pool", "pldc.clip_model=pldc-tiny-pool-clip",
                    f"pldc.clip_weights={weights}", f"pldc.class_descriptions={descriptions}",
                    "train.eval_every=100")
    trainer = Trainer(cfg, tmp_path / "run")
    assert isinstance(trainer.clip, MaskPoolClassifier)
    assert "DICC (mask_pool) with" in trainer.summary()
    trainer.train()
    semi = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][4:]
    assert all(l["n_dicc_changed"] is not None and 0 <= l["n_dicc_changed"] <= l["n_kept"] for l in semi)
    kept = load_records(tmp_path / "run", 8).queries
    kept = kept[kept["keep_ddtf"]]
    assert len(kept) and (kept["corrected_class"] >= 0).all() and kept["clip_top5_probs"].notna().all()


def test_dicc_without_weights_stops_with_instructions(data_root, tmp_path):
    proc = _train_cli("--config", str(ROOT / "configs" / "smoke.yaml"), f"data.data_root={data_root}",
                      "data.percent=25", "pldc.dicc=true", "--run-dir", str(tmp_path / "run"))
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 1 and "Traceback" not in out
    assert "pldc.clip_weights" in out and "pldc.dicc=false" in out


def test_a_second_trainer_on_the_same_run_is_refused(data_root, tmp_path):
    cfg = smoke_cfg(data_root, "records.enabled=false")
    first = Trainer(cfg, tmp_path / "run")  # holds the run's lock while alive
    with pytest.raises(RunDirError, match="another process .* is training this run"):
        Trainer(cfg, tmp_path / "run", resume=True)
    del first


def test_a_run_folder_saved_before_config_version_resumes_with_its_checkpoints(data_root, tmp_path):
    """An old run folder: decoder_layers in transformers' count and none of the version-2 keys."""
    import yaml

    from pldc_core.training.checkpoint import latest_checkpoint, load_checkpoint
    from tests.pldc_core.test_config import _v1

    run = tmp_path / "run"
    cfg = smoke_cfg(data_root, "records.enabled=false", "train.eval_every=100")
    Trainer(cfg, run).train(stop_at=4)
    old = _v1(cfg.to_dict())
    assert old["model"]["decoder_layers"] == 2
    (run / "config.yaml").write_text(yaml.safe_dump(old))
    path = latest_checkpoint(run)
    state = load_checkpoint(path)
    state["config"] = old
    torch.save(state, path)

    resumed = Trainer(load_config(run / "config.yaml", saved=True), run, resume=True)
    assert resumed.iter == 4 and len(resumed.student.net.model.transformer_module.decoder.layers) == 1
    resumed.train()
    assert resumed.iter == 8
    assert load_config(run / "config.yaml") == cfg  # re-saved as version 2, same meaning


def test_labeled_strong_view_and_step_schedule(data_root, tmp_path):
    """The student sees weak + strong views of each labeled image; the lr drops by gamma at each step."""
    cfg = smoke_cfg(data_root, "train.labeled_strong_view=true", "train.lr_schedule=step", "train.lr_steps=[2, 4]",
                    "train.lr_gamma=0.5", "train.warmup_iters=0", "records.enabled=false", "train.eval_every=100")
    trainer = Trainer(cfg, tmp_path / "run")
    assert "; lr 0.0005 (x0.5 at 2, 4); checkpoint every" in trainer.summary()
    batch_sizes = []
    # (the teacher, a deep copy of the student, inherits the hook: count the student's calls only)
    trainer.student.register_forward_pre_hook(
        lambda module, args: batch_sizes.append(len(args[0])) if module is trainer.student else None)
    trainer.train(stop_at=5)
    # burn-in: 2 labeled images x 2 views; then + 2 unlabeled strong views
    assert batch_sizes == [4, 4, 4, 4, 6]
    lrs = [json.loads(l)["lr"] for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    base = cfg.train.lr
    assert lrs == pytest.approx([base, base, base / 2, base / 2, base / 4])


def test_semi_batch_labeled_sets_the_labeled_batch_after_burn_in_and_resumes_alike(data_root, tmp_path):
    cfg = smoke_cfg(data_root, "train.semi_batch_labeled=1", "train.max_iters=6", "records.enabled=false",
                    "train.eval_every=100")
    trainer = Trainer(cfg, tmp_path / "full")
    batch_sizes = []
    trainer.student.register_forward_pre_hook(
        lambda module, args: batch_sizes.append(len(args[0])) if module is trainer.student else None)
    trainer.train()
    # burn-in: 2 labeled images; then 1 labeled + 2 unlabeled strong views
    assert batch_sizes == [2, 2, 2, 2, 3, 3]
    assert "2 labeled images per burn-in step, 1 labeled + 2 unlabeled per PL-DC step" in trainer.summary()
    # paused after the first PL-DC step and resumed: the same steps as the uninterrupted run
    Trainer(cfg, tmp_path / "paused").train(stop_at=5)
    Trainer(cfg, tmp_path / "paused", resume=True).train()
    losses = [[json.loads(l)["loss"] for l in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
              for name in ("full", "paused")]
    assert len(losses[0]) == 6 and losses[0] == losses[1]


def test_eval_writes_coco_results_json(data_root, tmp_path):
    import argparse

    from pycocotools.coco import COCO

    from pldc_core import eval_command

    cfg = smoke_cfg(data_root, "records.enabled=false", "train.eval_every=100", "pldc.enabled=false",
                    "train.max_iters=2", "train.burn_in_iters=2", "train.checkpoint_every=2")
    Trainer(cfg, tmp_path / "run").train()
    parser = argparse.ArgumentParser()
    eval_command.add_arguments(parser)
    out = tmp_path / "preds.json"
    args = parser.parse_args(["--checkpoint", str(tmp_path / "run"), "--images", "3", "--device", "cpu",
                              "--predictions-out", str(out)])
    assert eval_command.run(args) == 0
    results = json.loads(out.read_text())
    gt = COCO(str(Path(data_root) / "synthetic" / "annotations" / "instances_val.json"))
    assert {r["image_id"] for r in results} == set(gt.getImgIds()[:3])
    assert len(results) == 3 * cfg.model.test_top_k
    assert {r["category_id"] for r in results} <= set(gt.getCatIds())
    assert all(0 <= r["score"] <= 1 and set(r["segmentation"]) == {"size", "counts"} for r in results)
    gt.loadRes(results)  # pycocotools reads it back
