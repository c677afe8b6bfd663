"""The installed `pldc`: every command that takes a run, given a folder that is not one, says so in
one line, exits non-zero and leaves the folder as it was."""
from __future__ import annotations

import pytest

from apps.cli import main
from tests.cli_checks import assert_one_error_line, snapshot


@pytest.mark.parametrize("command, expected", [
    (["train", "--resume", "{dir}"], "not a run folder (no config.yaml)"),
    (["eval", "--checkpoint", "{dir}"], "no checkpoint here (no checkpoints/ folder): not a run folder"),
    (["predict", "--checkpoint", "{dir}", "--images", "{dir}", "--out", "{dir}/out.json"],
     "no checkpoint here (no checkpoints/ folder): not a run folder"),
    (["pseudo-labels", "--checkpoint", "{dir}"], "no checkpoint here (no checkpoints/ folder): not a run folder"),
    (["pretrain", "export", "{dir}", "--out", "{dir}/weights.pt"], "no checkpoint here"),
    (["clip-crops", "{dir}"], "records: no complete records"),
    (["report", "{dir}"], "no complete pseudo-label records"),
    (["fiftyone", "{dir}"], "records: no complete records"),
])
def test_a_folder_that_is_not_a_run(tmp_path, capsys, command, expected):
    folder = tmp_path / "holiday photos"
    folder.mkdir()
    (folder / "beach.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    before = snapshot(tmp_path)
    code = main([part.format(dir=folder) for part in command])
    assert code != 0
    prog = " ".join(command[:2]) if command[0] == "pretrain" else command[0]
    assert_one_error_line(capsys.readouterr().err, prog, str(folder), expected)
    assert snapshot(tmp_path) == before
