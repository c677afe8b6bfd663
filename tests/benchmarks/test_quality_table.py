from benchmarks.quality_table import ANALYSIS, write


def test_write_replaces_the_tables_and_keeps_the_analysis(tmp_path):
    dest = tmp_path / "quality.md"
    dest.write_text(f"# old tables\n\n{ANALYSIS} (a date)\n\nwhat the runs showed\n")
    write("# new tables\n", dest)
    assert dest.read_text() == f"# new tables\n\n{ANALYSIS} (a date)\n\nwhat the runs showed\n"
    assert not (tmp_path / "quality.md.bak").exists()


def test_write_backs_up_a_file_without_the_analysis_heading(tmp_path, capsys):
    dest = tmp_path / "quality.md"
    dest.write_text("# old tables\n\n## Analysis under another heading\n\nwhat the runs showed\n")
    write("# new tables\n", dest)
    assert dest.read_text() == "# new tables\n"
    assert (tmp_path / "quality.md.bak").read_text().endswith("what the runs showed\n")
    assert "quality.md.bak" in capsys.readouterr().err
