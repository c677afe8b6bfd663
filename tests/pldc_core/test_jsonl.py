"""JSON-lines logs: append, read back past lines cut short by a kill, drop the steps a resume repeats."""
from __future__ import annotations

import pytest

from pldc_core.jsonl import JsonLinesError, append_json_lines, drop_lines_after, parse_json_lines, read_json_lines


def test_appended_records_read_back_in_order(tmp_path):
    path = tmp_path / "log.jsonl"
    assert append_json_lines(path, [{"iter": 1, "loss": 0.5}]) == 1
    assert append_json_lines(path, [{"iter": 2}, {"iter": 3, "name": "a\nb"}], sync=True) == 2
    assert append_json_lines(path, []) == 0
    assert read_json_lines(path) == [{"iter": 1, "loss": 0.5}, {"iter": 2}, {"iter": 3, "name": "a\nb"}]
    assert path.read_text().count("\n") == 3  # a newline inside a value is escaped


def test_a_missing_file_reads_as_no_records(tmp_path):
    assert read_json_lines(tmp_path / "absent.jsonl") == []
    assert read_json_lines(tmp_path / "absent.jsonl", strict=True) == []


def test_lines_cut_short_are_skipped_wherever_they_are(tmp_path):
    path = tmp_path / "log.jsonl"
    # a writer killed mid-line, then a later writer appending after it; blank lines and non-objects too
    path.write_text('{"iter": 1}\n{"iter": 2, "lo\n\n[1, 2]\n{"iter": 3}\n{"iter": 4, "l')
    assert read_json_lines(path) == [{"iter": 1}, {"iter": 3}]
    assert parse_json_lines(['{"a": 1}', "7", "", '{"b"']) == [{"a": 1}]


def test_strict_reading_names_the_file_and_line_of_a_bad_line(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text('{"iter": 1}\n{"iter": 2}\n{"iter": 3, "A')  # the last line may still be being written
    assert read_json_lines(path, strict=True) == [{"iter": 1}, {"iter": 2}]
    path.write_text('{"iter": 1}\nnot json\n{"iter": 3}\n')
    with pytest.raises(JsonLinesError, match=r"eval\.jsonl: line 2 is not valid JSON"):
        read_json_lines(path, strict=True)
    path.write_text('{"iter": 1}\n[3]\n{"iter": 3}\n')
    with pytest.raises(ValueError, match=r"eval\.jsonl: line 2 is not a JSON object"):
        read_json_lines(path, strict=True)


def test_drop_lines_after_keeps_earlier_steps_verbatim_and_drops_cut_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = ['{"iter": 9, "loss": 1.0}', '{"iter":10,"loss":0.9}', '{"note": "no step"}', '{"iter": 11}',
             '{"iter": 12, "lo']
    path.write_text("\n".join(lines))
    drop_lines_after(path, 10)
    assert path.read_text() == '{"iter": 9, "loss": 1.0}\n{"iter":10,"loss":0.9}\n{"note": "no step"}\n'
    before = path.stat().st_mtime_ns
    drop_lines_after(path, 10)  # nothing to drop: the file is not rewritten
    assert path.stat().st_mtime_ns == before
    drop_lines_after(tmp_path / "absent.jsonl", 3)
    assert not (tmp_path / "absent.jsonl").exists()


def test_drop_lines_after_reads_the_named_step_key(tmp_path):
    path = tmp_path / "pretrain.log.jsonl"
    append_json_lines(path, [{"step": s, "iter": 0} for s in (100, 200, 300)])
    drop_lines_after(path, 200, key="step")
    assert [r["step"] for r in read_json_lines(path)] == [100, 200]
