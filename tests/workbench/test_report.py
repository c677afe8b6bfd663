import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pldc_core.records.fabricated_run import fabricate_run
from pldc_core.records.store import RecordSet, load_records
from workbench import report
from workbench.trends import checkpoint_trends, read_jsonl

MANIFEST = {"categories": [{"id": 1, "name": "cat", "supercategory": "animal"},
                           {"id": 3, "name": "dog", "supercategory": "animal"}],
            "thresholds": {"filter": "ddtf", "c_t": 0.8, "m_t": 0.8, "s_t": 0.6}}


def _record_set(error_types, corrected=(-1, -1, -1)):
    n = len(error_types)
    known = [e is not None for e in error_types]
    q = pd.DataFrame({
        "image_id": np.arange(n), "query": np.zeros(n, np.int16), "pred_class": np.zeros(n, np.int16),
        "c": np.float32([0.9, 0.85, 0.5]), "m": np.float32([0.9, 0.95, 0.9]),
        "s": np.float32([0.81, 0.8075, 0.45]), "height": 480, "width": 640, "area": [5000, 20000, 50],
        "keep_ddtf": [True, True, False], "keep_coupled": [True, True, False],
        "gt_id": np.where(known, [1, 2, 2], -1), "gt_class": np.where(known, [0, 1, 1], -1).astype(np.int16),
        "iou": np.where(known, [0.9, 0.7, 0.1], np.nan).astype(np.float32),
        "error_type": pd.array(error_types, dtype="str"), "corrected_class": np.int16(list(corrected)),
        "unc_mean_inside": np.float32([0.1, 0.2, 0.3]), "unc_mean_boundary": np.float32([0.4, 0.5, 0.6]),
        "unc_mean_overlap": np.float32([np.nan, 0.2, np.nan])})
    gt = pd.DataFrame({"image_id": [0, 1], "gt_id": [1, 2], "gt_class": np.int16([0, 1])}) if any(known) \
        else pd.DataFrame({"image_id": [], "gt_id": [], "gt_class": []})
    return RecordSet(queries=q, gt=gt, images=pd.DataFrame(), manifest=MANIFEST, path=Path("."))


def test_checkpoint_trends_hand_worked():
    t = checkpoint_trends([(500, _record_set(["Cor", "Oth", "Loc"])),
                           (1000, _record_set(["Cor", "Cor", "Loc"], corrected=(0, 1, -1)))])
    assert sorted(t.quality["iteration"].unique()) == [500, 1000]
    errors = t.errors[(t.errors["size"] == "all") & (t.errors["kept_by"] == "ddtf")].set_index(["iteration", "error_type"])
    assert errors.loc[(500, "Oth"), "count"] == 1 and errors.loc[(1000, "Cor"), "count"] == 2
    conf = t.confusion.set_index(["iteration", "use_dicc"])["class_accuracy"]
    assert conf.loc[(500, False)] == pytest.approx(0.5)   # kept: cat on cat, cat on dog
    assert conf.loc[(1000, True)] == pytest.approx(1.0)   # DICC relabels the second as dog
    dicc = t.dicc.set_index("iteration")
    assert dicc.loc[500, "n_ran"] == 0 and dicc.loc[1000, "fixed"] == 1
    runs = t.thresholds[t.thresholds["point"] == "run_ddtf"].set_index("iteration")
    assert runs.loc[500, "kept"] == 2 and runs.loc[500, "recall"] == pytest.approx(0.5)
    unc = t.uncertainty.set_index(["iteration", "region"])["mean_u"]
    assert unc.loc[(500, "boundary")] == pytest.approx(0.45)  # kept rows only


def test_checkpoint_trends_without_gt():
    t = checkpoint_trends([(100, _record_set([None, None, None]))])
    assert t.quality["n"].eq(0).all() and t.errors["count"].eq(0).all()
    assert t.confusion["class_accuracy"].isna().all()
    assert set(t.thresholds["point"]) == {"run_ddtf", "run_coupled"}  # no "best" without GT
    assert t.thresholds["kept"].tolist() == [2, 2]


def test_read_jsonl(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"iter": 100, "loss": 2.0}\n{"iter": 50, "loss": 3.0}\n{"iter": 150, "lo')
    log = read_jsonl(path)  # a last line still being written is skipped
    assert log["iteration"].tolist() == [50, 100] and log["loss"].tolist() == [3.0, 2.0]
    path.write_text('{"iter": 100}\nnot json\n{"iter": 150}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 2"):
        read_jsonl(path)
    assert read_jsonl(tmp_path / "absent.jsonl").empty


def _script_sources(text):
    return re.findall(r"<script[^>]*\bsrc\s*=", text, flags=re.IGNORECASE)


@pytest.mark.slow
def test_report_on_a_fabricated_run(tmp_path):
    run = fabricate_run(tmp_path / "run")
    path = report.write_report(run, tmp_path / "out")
    text = path.read_text()
    assert path == tmp_path / "out" / "report.html"
    assert not _script_sources(text)  # self-contained: no script is fetched
    assert text.count("Plotly.newPlot") >= 20 and text.count("plotly.js v") == 1  # the bundle, once
    summary = text[text.index('class="summary"'):text.index("</section>")]
    assert "predicts IoU better than" in summary and "dominant error" in summary
    th = load_records(run).manifest["thresholds"]
    assert "Best DDTF pair by F1" in summary
    assert f"The run's</b> m_t = {th['m_t']:.3g}, c_t = {th['c_t']:.3g}: F1 " in summary
    pngs = sorted(p.name for p in (tmp_path / "out" / "figures").glob("*.png"))
    assert {"quality_scatter.png", "thresholds_f1.png", "confusion.png", "errors_kept.png",
            "training_losses.png"} <= set(pngs)
    assert all((tmp_path / "out" / "figures" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)

    # the CLI: an earlier checkpoint, HTML only
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    args = parser.parse_args([str(run), "--out", str(tmp_path / "early"), "--iteration", "500", "--no-png"])
    assert report.run(args) == 0
    assert "Checkpoint 500 " in (tmp_path / "early" / "report.html").read_text()
    assert not (tmp_path / "early" / "figures").exists()


@pytest.mark.slow
def test_report_without_gt_and_cli_errors(tmp_path, capsys):
    run = fabricate_run(tmp_path / "run", n_images=10, iterations=(500,), with_gt=False)
    text = report.write_report(run, png=False).read_text()
    assert (run / "report" / "report.html").exists() and not _script_sources(text)
    assert "hold no ground truth" in text and "predicts IoU better" not in text

    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    assert report.run(parser.parse_args([str(tmp_path / "nothing")])) == 2
    assert "no complete pseudo-label records" in capsys.readouterr().err
    assert report.run(parser.parse_args([str(run), "--iteration", "7"])) == 2
    assert "iteration 7" in capsys.readouterr().err
    assert report.run(parser.parse_args([str(run), "--no-png"])) == 0
    assert capsys.readouterr().out.strip() == f"pldc report: wrote {run / 'report' / 'report.html'} (open it in a browser)"


def _figure(secs, name):
    return next(item for _, _, items in secs for n, item in items if n == name)


def _names(secs):
    return [n for _, _, items in secs for n, _ in items]


@pytest.mark.slow
def test_report_when_the_run_kept_nothing(tmp_path):
    # thresholds no query reaches: the run kept no pseudo-label, so DICC had nothing to correct either
    run = fabricate_run(tmp_path / "run", n_images=10, n_queries=8, iterations=(500, 1000),
                        thresholds={"c_t": 1.0, "m_t": 1.0})
    d = report.collect(run)
    assert d.n_kept == 0 and d.scope_kept_by is None
    summary = " ".join(report.summary_lines(d))
    best = d.thresholds.best_ddtf
    assert "kept no pseudo-label at iteration 1,000" in summary
    assert f"c_t = {best['c_t']:.2f} and m_t = {best['m_t']:.2f}" in summary
    assert "it had nothing to correct" in summary

    secs = report.sections(d)
    # the confusion section says why it shows all queries, and shows them (a matrix with values)
    why = _figure(secs, "confusion_scope")
    assert 'class="why"' in why and "kept no pseudo-label" in why and "all queries instead" in why
    matrix = _figure(secs, "confusion")
    assert np.isfinite(np.asarray(matrix.data[0].z, dtype=float)[:-1]).any()
    assert "all queries" in matrix.layout.title.text
    assert "<table" in _figure(secs, "confusion_pairs")
    # the kept-only error breakdown is empty, and says why and where to look
    kept = _figure(secs, "errors_kept")
    message = kept.layout.annotations[0].text.replace("<br>", " ")
    assert not kept.data and "kept no pseudo-label" in message and "all queries" in message
    trend = _figure(secs, "errors_trend")
    assert not trend.data and "at any recorded checkpoint" in trend.layout.annotations[0].text.replace("<br>", " ")
    assert _figure(secs, "errors_all").data
    dicc = next(s for s in secs if s[0].startswith("DICC"))
    assert "nothing to correct" in dicc[1] and not dicc[2]


@pytest.mark.slow
def test_report_when_dicc_was_off(tmp_path):
    run = fabricate_run(tmp_path / "run", n_images=10, n_queries=8, iterations=(500, 1000), with_dicc=False)
    d = report.collect(run)
    assert not d.dicc_in_run
    assert "DICC was off in this run" in " ".join(report.summary_lines(d))
    secs = report.sections(d)
    dicc = next(s for s in secs if s[0].startswith("DICC"))
    assert "DICC was off in this run" in dicc[1] and dicc[2] == []   # no table of zeros
    assert "trend_dicc" not in _names(secs)                          # no flat line
    accuracy = _figure(secs, "trend_class_accuracy")
    assert [t.name for t in accuracy.data] == ["teacher"]
    # with DICC on, the same sections are there
    on = report.sections(report.collect(fabricate_run(tmp_path / "on", n_images=10, n_queries=8)))
    assert {"dicc_summary", "trend_dicc"} <= set(_names(on))


@pytest.mark.slow
def test_report_writes_every_ap_with_its_unit(tmp_path):
    run = fabricate_run(tmp_path / "run", n_images=6, n_queries=6)
    text = report.write_report(run, png=False).read_text()
    summary = text[text.index('class="summary"'):text.index("</section>")]
    last = read_jsonl(run / "eval.jsonl").iloc[-1]
    assert f"AP {last['AP']:.2f}% · AP50 {last['AP50']:.2f}%" in summary
    # no AP followed by a bare number anywhere in the page's own text
    body = re.sub(r"<script.*?</script>", "", text, flags=re.S)
    assert not re.findall(r"\bAP(?:50|75|s|m|l)?\s+\d+(?:\.\d+)?(?![\d.%])", body)
    figures = dict(report.sections(report.collect(run))[-1][2])
    assert figures["training_eval"].layout.yaxis.title.text == "mask AP (%)"
    per_class = figures["training_eval_per_class"]
    assert per_class.layout.yaxis.title.text == "mask AP (%)" and per_class.layout.yaxis.ticksuffix == "%"
    assert all(text.endswith("%") for trace in per_class.data for text in trace.text)


def test_summary_names_dicc_changes_at_other_checkpoints():
    from types import SimpleNamespace

    trend = pd.DataFrame({"iteration": [0, 50, 100], "n_changed": [2, 1, 0], "fixed": [2, 0, 0],
                          "broken": [0, 1, 0]})
    d = SimpleNamespace(iteration=100, dicc=SimpleNamespace(summary={"n_changed": 0}),
                        trends=SimpleNamespace(dicc=trend))
    assert report._dicc_elsewhere(d) == (
        " Across the other recorded checkpoints it changed 3 (fixed 2, broke 1), the most at iteration 0: "
        "DICC can overturn a kept class only early in the semi-supervised phase.")
    d.dicc.summary["n_changed"] = 1  # this checkpoint's own changes are the news
    assert report._dicc_elsewhere(d) == ""
    d.dicc.summary["n_changed"], d.trends.dicc = 0, trend.assign(n_changed=0)
    assert report._dicc_elsewhere(d) == ""


def test_per_class_ap_from_the_first_and_last_evaluation(tmp_path):
    from workbench.trends import per_class_ap

    path = tmp_path / "eval.jsonl"
    path.write_text("\n".join([
        '{"iter": 200, "model": "student", "AP": 5.0}',  # logged before per-class AP was: left out
        '{"iter": 500, "model": "student", "AP": 8.0, "AP_per_class": {"disk": 12.0, "ellipse": 4.0}}',
        '{"iter": 1000, "model": "teacher", "AP": 9.0, "AP_per_class": {"disk": 14.0, "ellipse": NaN}}',
        '{"iter": 1500, "model": "teacher", "AP": 11.0, "AP_per_class": {"disk": 16.5, "ellipse": 5.5}}']) + "\n")
    table = per_class_ap(read_jsonl(path)).set_index(["model", "class"])
    assert table.loc[("teacher", "disk"), ["first", "last", "change"]].tolist() == [14.0, 16.5, 2.5]
    assert table.loc[("teacher", "disk"), ["first_iteration", "last_iteration"]].tolist() == [1000, 1500]
    assert np.isnan(table.loc[("teacher", "ellipse"), "change"])
    assert table.loc[("student", "ellipse"), ["first", "last", "first_iteration"]].tolist() == [4.0, 4.0, 500]
    assert per_class_ap(read_jsonl(tmp_path / "absent.jsonl")).empty
    assert per_class_ap(pd.DataFrame({"iteration": [1], "AP": [2.0]})).empty
