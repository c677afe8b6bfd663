import os
import stat

import pytest

from pldc_core.atomic import atomic_dir, write_json, write_text


def test_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.json"
    write_json(target, {"x": 1})
    write_json(target, {"x": 2})
    assert target.read_text().replace(" ", "").replace("\n", "") == '{"x":2}'
    assert os.listdir(tmp_path) == ["a.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    from pldc_core.atomic import atomic_path

    target = tmp_path / "a.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_permissions_follow_the_umask_not_mkstemp(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "f.txt", "x")
        with atomic_dir(tmp_path / "d") as d:
            (d / "inner").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_atomic_dir_replaces_whole_folder_or_nothing(tmp_path):
    with atomic_dir(tmp_path / "d") as d:
        (d / "one").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "d") as d:
            (d / "two").write_text("2")
            raise RuntimeError("killed")
    assert os.listdir(tmp_path / "d") == ["one"]
    with atomic_dir(tmp_path / "d") as d:
        (d / "three").write_text("3")
    assert os.listdir(tmp_path / "d") == ["three"]
    assert sorted(os.listdir(tmp_path)) == ["d"]


def test_a_killed_writers_temporary_is_removed_and_a_live_ones_kept(tmp_path):
    """kill -9 in the middle of a records write: the next writer clears what it left, nothing else."""
    import signal
    import subprocess
    import sys

    from pldc_core.records import store as R

    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from pldc_core.records import store as R\n"
        "m = {'run': 'r', 'iteration': 1, 'phase': 'semi', 'config_hash': 'x', 'dataset': 'd', 'image_root': '/i',\n"
        "     'categories': [], 'thresholds': {'filter': 'ddtf', 'c_t': .5, 'm_t': .5, 's_t': .5},\n"
        "     'dicc': {'enabled': False, 'w': None}}\n"
        f"w = R.RecordWriter({str(tmp_path)!r}, 1, m)\n"
        "print('writing', flush=True)\n"
        "time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    records = tmp_path / "records"
    abandoned = [p.name for p in records.iterdir()]
    assert len(abandoned) == 1 and abandoned[0].startswith(f".iter_0000001.pid{child.pid}.")
    live = records / f".iter_0000002.pid{os.getpid()}.abc.tmp"  # another writer of this process, busy
    live.mkdir()
    unrelated = records / "notes.tmp"
    unrelated.write_text("mine")
    R.RecordWriter(tmp_path, 3, {
        "run": "r", "iteration": 3, "phase": "semi", "config_hash": "x", "dataset": "d", "image_root": "/i",
        "categories": [], "thresholds": {"filter": "ddtf", "c_t": .5, "m_t": .5, "s_t": .5},
        "dicc": {"enabled": False, "w": None}}).close()
    assert sorted(p.name for p in records.iterdir()) == [live.name, "iter_0000003", "notes.tmp"]
