import json
import random

import numpy as np
import pytest
import torch

from pldc_core.training import checkpoint as ckpt
from pldc_core.training.checkpoint import (CheckpointError, best_checkpoint, capture_rng_state, latest_checkpoint,
                                           load_checkpoint, load_latest_checkpoint, restore_rng_state, save_checkpoint)


def state_at(iteration):
    model = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(model.weight, float(iteration))
    return {"student": model.state_dict(), "iteration": iteration, "phase": "semi", "config": {"lr": 1e-4}}


def names(run_dir):
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir())


def pointer(run_dir):
    return json.loads((run_dir / "checkpoints" / "last.json").read_text())


def test_save_and_load_round_trip(tmp_path):
    path = save_checkpoint(tmp_path, 100, state_at(100))
    assert path == tmp_path / "checkpoints" / "ckpt_0000100.pt"
    assert pointer(tmp_path) == {"checkpoint": "ckpt_0000100.pt", "iteration": 100, "best": None}
    for source in (tmp_path, path):
        state = load_checkpoint(source)
        assert state["iteration"] == 100 and state["config"] == {"lr": 1e-4}
        assert torch.equal(state["student"]["weight"], torch.full((2, 3), 100.0))
    assert latest_checkpoint(tmp_path) == path
    assert latest_checkpoint(tmp_path / "elsewhere") is None


def test_iteration_mismatch_is_refused(tmp_path):
    with pytest.raises(ValueError, match="200"):
        save_checkpoint(tmp_path, 200, state_at(100))


def test_failed_save_leaves_previous_state_intact(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 100, state_at(100))
    before = (tmp_path / "checkpoints" / "ckpt_0000100.pt").read_bytes()

    def dying_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 200, state_at(200))
    monkeypatch.undo()

    assert names(tmp_path) == ["ckpt_0000100.pt", "last.json"]  # no temp files, no ckpt_0000200.pt
    assert pointer(tmp_path)["checkpoint"] == "ckpt_0000100.pt"
    assert (tmp_path / "checkpoints" / "ckpt_0000100.pt").read_bytes() == before
    assert load_checkpoint(tmp_path)["iteration"] == 100


def test_stale_temp_files_of_a_killed_save_are_removed(tmp_path):
    save_checkpoint(tmp_path, 100, state_at(100))
    (tmp_path / "checkpoints" / ".ckpt_0000200.pt.abc123.tmp").write_bytes(b"partial")
    (tmp_path / "checkpoints" / "notes.txt").write_text("mine")
    save_checkpoint(tmp_path, 200, state_at(200))
    assert names(tmp_path) == ["ckpt_0000100.pt", "ckpt_0000200.pt", "last.json", "notes.txt"]


def test_retention_keeps_last_k_plus_best(tmp_path):
    for it in (100, 200, 300):
        save_checkpoint(tmp_path, it, state_at(it), keep=2, best=(it == 100))
    assert names(tmp_path) == ["ckpt_0000100.pt", "ckpt_0000200.pt", "ckpt_0000300.pt", "last.json"]
    assert best_checkpoint(tmp_path).name == "ckpt_0000100.pt"
    save_checkpoint(tmp_path, 400, state_at(400), keep=2, best=True)  # new best frees 100; 200 is 3rd newest
    assert names(tmp_path) == ["ckpt_0000300.pt", "ckpt_0000400.pt", "last.json"]
    save_checkpoint(tmp_path, 500, state_at(500), keep=1)
    assert names(tmp_path) == ["ckpt_0000400.pt", "ckpt_0000500.pt", "last.json"]
    assert pointer(tmp_path) == {"checkpoint": "ckpt_0000500.pt", "iteration": 500, "best": "ckpt_0000400.pt"}
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path, 600, state_at(600), keep=0)


def test_retention_never_deletes_the_pointed_checkpoint(tmp_path):
    # a resumed run may save a lower iteration than files already on disk
    save_checkpoint(tmp_path, 300, state_at(300), keep=1)
    save_checkpoint(tmp_path, 200, state_at(200), keep=1)
    assert names(tmp_path) == ["ckpt_0000200.pt", "ckpt_0000300.pt", "last.json"]
    assert load_checkpoint(tmp_path)["iteration"] == 200


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_file_names_the_file(tmp_path):
    path = save_checkpoint(tmp_path, 100, state_at(100))
    truncate(path)
    with pytest.raises(CheckpointError, match="ckpt_0000100.pt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no loadable checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_run_dir_falls_back_to_previous_good_checkpoint(tmp_path):
    for it in (100, 200, 300):
        save_checkpoint(tmp_path, it, state_at(it))
    truncate(tmp_path / "checkpoints" / "ckpt_0000300.pt")
    (tmp_path / "checkpoints" / "ckpt_0000200.pt").write_bytes(b"not a zip file at all")
    with pytest.warns(RuntimeWarning) as caught:
        path, state = load_latest_checkpoint(tmp_path)
    assert path.name == "ckpt_0000100.pt" and state["iteration"] == 100
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "ckpt_0000300.pt: corrupt or truncated" in messages[0] and "falling back to ckpt_0000200.pt" in messages[0]
    assert "ckpt_0000200.pt: corrupt or truncated" in messages[1] and "falling back to ckpt_0000100.pt" in messages[1]


def test_missing_pointer_uses_newest_file(tmp_path):
    for it in (100, 200):
        save_checkpoint(tmp_path, it, state_at(it))
    (tmp_path / "checkpoints" / "last.json").unlink()
    assert latest_checkpoint(tmp_path).name == "ckpt_0000200.pt"
    with pytest.warns(RuntimeWarning, match="last.json"):
        assert load_checkpoint(tmp_path)["iteration"] == 200


def test_pointer_wins_over_an_uncommitted_newer_file(tmp_path):
    # killed after the checkpoint was renamed into place but before last.json was updated
    save_checkpoint(tmp_path, 100, state_at(100))
    torch.save(state_at(200), ckpt.checkpoint_path(tmp_path, 200))
    assert load_checkpoint(tmp_path)["iteration"] == 100


def test_empty_run_dir_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path)


def draw():
    return (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(), torch.randint(0, 1000, (4,)).tolist())


def test_rng_round_trip_through_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(4)
    np_gen = np.random.default_rng(5)
    save_checkpoint(tmp_path, 10, {"rng": capture_rng_state({"sampler": gen, "np": np_gen})})
    expected = draw(), torch.rand(2, generator=gen).tolist(), np_gen.random(2).tolist()

    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    gen.manual_seed(99)
    np_gen = np.random.default_rng(99)
    restore_rng_state(load_checkpoint(tmp_path)["rng"], {"sampler": gen, "np": np_gen})
    assert (draw(), torch.rand(2, generator=gen).tolist(), np_gen.random(2).tolist()) == expected


def test_restore_rejects_incomplete_rng_state():
    with pytest.raises(CheckpointError, match="numpy"):
        restore_rng_state({"python": random.getstate(), "torch": torch.get_rng_state()})
    with pytest.raises(CheckpointError, match="sampler"):
        restore_rng_state(capture_rng_state(), {"sampler": torch.Generator()})
