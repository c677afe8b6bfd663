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
