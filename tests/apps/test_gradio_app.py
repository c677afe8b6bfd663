"""The workbench's callbacks called directly (no browser), on a fabricated run; and its run control.

The slow test at the end starts a real (tiny) training process from the form, stops it (it saves
a checkpoint and reports 'stopped'), resumes it and stops it again.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from apps.gradio_app import launch, runs
from apps.gradio_app.app import check_args, is_loopback
from apps.gradio_app.context import AppSettings
from apps.gradio_app.demo import App
from apps.gradio_app.tabs import dicc as dicc_tab
from apps.gradio_app.tabs.train import TrainForm
from pldc_core.method.filters import Thresholds
from pldc_core.records.fabricated_run import categories, fabricate_run
from workbench.curation import CurationStore
from workbench.thresholds import what_if, what_if_coupled

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("wb")
    runs_root, data_root = base / "runs", base / "data"
    fabricate_run(runs_root / "demo", n_images=10, n_queries=8, iterations=(500, 1000))
    data_root.mkdir()
    return runs_root, data_root


@pytest.fixture(scope="module")
def wb(roots):
    return App(AppSettings(runs_root=roots[0], data_root=roots[1]))


def _vline(fig: go.Figure) -> float:
    return next(s.x0 for s in fig.layout.shapes if s.type == "line" and s.x0 == s.x1)


class _Select:
    """Stands in for gr.SelectData: the clicked row's values."""

    def __init__(self, row_value):
        self.row_value = row_value


# --------------------------------------------------------------------------- paths
def test_paths_cannot_leave_their_root(tmp_path):
    root = tmp_path / "runs"
    (root / "a").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    assert runs.inside(root, "a/file.json") == (root / "a" / "file.json").resolve()
    assert runs.inside(root, str(root / "a")) == (root / "a").resolve()
    for bad in ("../x", "a/../../x", "/etc/passwd", "link/x.json", "", "~/x"):
        with pytest.raises(runs.PathEscapeError):
            runs.inside(root, bad)
    assert runs.run_dir(root, "quick-5pct_v1.2") == (root / "quick-5pct_v1.2").resolve()
    for bad in ("../x", "a/b", ".hidden", "..", "", "x" * 101, "name with space"):
        with pytest.raises(runs.PathEscapeError):
            runs.run_dir(root, bad)


def test_ui_paths_are_refused_outside_the_roots(wb, roots):
    runs_root, data_root = roots
    message, file = wb.curate.export("demo", 1000, "../../../escape.json", False)
    assert "not exported" in message and "outside" in message and file is None
    message, file = wb.curate.export("demo", 1000, "/tmp/escape.json", False)
    assert "not exported" in message and file is None
    assert not (runs_root.parent / "escape.json").exists()
    with pytest.raises(runs.PathEscapeError):
        wb.ctx.run_path("../demo")
    assert wb.ctx.checkpoint_choices("../../etc") == []
    # a CLIP weights path is read under the data folder only
    settings = launch.TrainSettings(dicc=True, clip_weights="../../weights.pt")
    with pytest.raises(launch.LaunchError, match="outside"):
        launch.check_settings(ROOT / "configs" / "smoke.yaml", settings, data_root)


def test_command_line_host_and_auth_rules(roots):
    runs_root, data_root = roots

    def args(**kw):
        base = dict(runs_dir=str(runs_root), data_root=str(data_root), host="127.0.0.1", port=7860, auth=None,
                    run=None)
        return argparse.Namespace(**{**base, **kw})

    (runs_root / "plain").mkdir()
    settings, auth = check_args(args(run="demo"))
    assert settings.initial_run == "demo" and auth is None and settings.runs_root == runs_root.resolve()
    assert check_args(args(host="0.0.0.0", auth="ana:secret"))[1] == ("ana", "secret")
    for bad, match in ((dict(host="0.0.0.0"), "give --auth"), (dict(auth="ana:secret"), "only for"),
                       (dict(host="0.0.0.0", auth="ana"), "USER:PASSWORD"), (dict(run="../x"), "--run"),
                       (dict(run="nope"), "no run 'nope'"), (dict(run="plain"), "not a run folder")):
        with pytest.raises(ValueError, match=match):
            check_args(args(**bad))
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")


def test_pldc_app_refuses_a_public_address_without_a_login(roots, capsys):
    from apps.cli import main

    assert main(["app", "--runs-dir", str(roots[0]), "--host", "0.0.0.0"]) == 2
    assert "give --auth" in capsys.readouterr().err


# --------------------------------------------------------------------------- pseudo-labels
def test_grid_lookup_equals_the_exact_what_if(wb):
    ckpt = wb.ctx.checkpoint("demo", 1000)
    q, gt = ckpt.queries, ckpt.gt
    for c_t, m_t in ((0.7, 0.85), (0.0, 0.0), (1.0, 1.0), (0.33, 0.91)):
        got = ckpt.metrics_at(Thresholds("ddtf", c_t, m_t, 0.5))
        want = what_if(q, gt, c_t, m_t)
        for key in ("kept", "n_cor", "covered_gt", "precision", "recall", "f1"):
            assert got[key] == pytest.approx(want[key], nan_ok=True), (c_t, m_t, key)
    off_grid = ckpt.metrics_at(Thresholds("ddtf", 0.705, 0.855, 0.5))
    assert off_grid["kept"] == what_if(q, gt, 0.705, 0.855)["kept"]
    assert ckpt.metrics_at(Thresholds("coupled", 0, 0, 0.6))["kept"] == what_if_coupled(q, gt, 0.6)["kept"]
    # at the run's thresholds, the decision is the recorded one
    assert ckpt.keep_mask(ckpt.run_thresholds).tolist() == q["keep_ddtf"].tolist()


def test_slider_move_redraws_the_threshold_line_and_the_what_if(wb):
    base = ("demo", 1000, "ddtf", 0.7, 0.85, 0.595, "IoU", "any", "any", "kept", "s", True)
    scatter, whatif, table, info, state = wb.pseudo_labels.show(*base)
    ckpt = wb.ctx.checkpoint("demo", 1000)
    kept = int(ckpt.queries["keep_ddtf"].sum())
    assert _vline(scatter) == 0.7 and f"{kept:,} kept by c >= 0.70 and m >= 0.85" in scatter.layout.title.text
    assert len(state["keys"]) == kept == len(table) and f"**{kept:,}** of {len(ckpt):,}" in info
    assert list(table["s"]) == sorted(table["s"], reverse=True)
    # every point is clickable: customdata is (image_id, query)
    points = [t for t in scatter.data if t.mode == "markers"]
    assert sum(len(t.x) for t in points) == len(ckpt)
    assert {tuple(map(int, cd)) for t in points for cd in t.customdata} == set(map(tuple, ckpt.queries[["image_id", "query"]].to_numpy()))

    moved = wb.pseudo_labels.show(*base[:3], 0.9, *base[4:])
    assert _vline(moved[0]) == 0.9
    kept_now = int(((ckpt.c >= np.float32(0.9)) & (ckpt.m >= np.float32(0.85))).sum())
    assert f"{kept_now:,} kept" in moved[0].layout.title.text and len(moved[4]["keys"]) == kept_now
    current = [t for t in moved[1].data if t.name == "current"]
    assert {t.x[0] for t in current} == {0.9, 0.85}  # on the c_t curve and on the m_t curve
    assert moved[1].layout.title.text != whatif.layout.title.text

    coupled = wb.pseudo_labels.show(*base[:2], "coupled", *base[3:])
    assert f"kept by s >= 0.59" in coupled[0].layout.title.text or "kept by s >= 0.60" in coupled[0].layout.title.text
    assert [t.name for t in coupled[1].data][0] == "vary s_t"
    by_error = wb.pseudo_labels.show(*base[:6], "error type", *base[7:])
    assert {t.name for t in by_error[0].data} >= {"Cor (correct)"}


def test_a_slider_step_updates_the_figures_on_screen(wb):
    """A DDTF step sends what the page applies in place (the scatter's marks, the what-if), the same as the
    whole figures would show; the coupled filter's line is part of the points' figure: it is sent whole."""
    base = ("demo", 1000, "ddtf", 0.7, 0.85, 0.595, "IoU", "any", "any", "kept", "s", True)
    full = wb.pseudo_labels.show(*base[:3], 0.9, *base[4:])
    step = wb.pseudo_labels.move(*base[:3], 0.9, *base[4:])
    assert step.scatter == gr.skip() and step.what_if == gr.skip()  # not sent to the plots
    applied = json.loads(step.step)
    assert applied["scatter"]["title.text"] == full.scatter.layout.title.text
    assert [s["x0"] for s in applied["scatter"]["shapes"] if s["type"] == "line"] == [0.9, 0]
    assert applied["what_if"]["layout"]["title"]["text"] == full.what_if.layout.title.text
    assert len(step.state["keys"]) == len(full.state["keys"])  # the listing of 'kept' follows the thresholds
    unchanged = wb.pseudo_labels.move(*base[:3], 0.9, *base[4:9], "all", *base[10:])
    assert list(unchanged[3:]) == [gr.skip()] * 3  # the listing of 'all' does not move with them: not sent
    assert json.loads(unchanged.step)["sent"] != applied["sent"]  # each step differs: the textbox always changes
    coupled = wb.pseudo_labels.move(*base[:2], "coupled", *base[3:])
    assert coupled.scatter.data[1].name.startswith("s = c·m") and coupled.step == gr.skip()
    # figures sent whole differ each time, so the plot draws them even over a figure a step changed
    again = wb.pseudo_labels.show(*base[:3], 0.9, *base[4:])
    assert again.scatter.layout.meta != full.scatter.layout.meta


def test_browse_filters(wb):
    ckpt = wb.ctx.checkpoint("demo", 1000)
    table, info, state = wb.pseudo_labels.browse("demo", 1000, "ddtf", 0.7, 0.85, 0.595, 3, "Cor", "all", "iou", False)
    rows = ckpt.queries.iloc[ckpt.positions(map(tuple, state["keys"]))]
    assert (rows["pred_class"] == 3).all() and (rows["error_type"] == "Cor").all()
    assert list(table["iou"]) == sorted(table["iou"])
    assert "class car" in info and "error Cor" in info
    filtered = wb.pseudo_labels.browse("demo", 1000, "ddtf", 0.7, 0.85, 0.595, "any", "any", "filtered", "s", True)[2]
    assert len(filtered["keys"]) == len(ckpt) - int(ckpt.queries["keep_ddtf"].sum())


def test_no_records_gives_messages_not_errors(tmp_path):
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    (tmp_path / "runs" / "empty" / "config.yaml").write_text("name: empty\n")
    bench = App(AppSettings(tmp_path / "runs", tmp_path / "data"))
    out = bench.pseudo_labels.show("empty", None, "ddtf", 0.7, 0.85, 0.6, "IoU", "any", "any", "all", "s", True)
    assert isinstance(out[0], go.Figure) and "choose a run" in out[3]
    assert "No pseudo-label records" in bench.sidebar.checkpoint_summary("empty", None)
    assert bench.confusion.show("empty", None, "counts", "before DICC", "all queries")[0].layout.annotations


# --------------------------------------------------------------------------- instance and curation
def test_open_instance_step_and_curate(wb, roots):
    runs_root = roots[0]
    _, _, _, _, state = wb.pseudo_labels.show("demo", 1000, "ddtf", 0.7, 0.85, 0.595, "IoU", "any", "any", "kept", "s", True)
    first = tuple(int(v) for v in state["keys"][0])
    out = wb.instance.open_from_table(state, ["pseudo mask", "GT", "uncertainty"], _Select([first[0], first[1], "x"]))
    tab, picture, facts, fig, where, relabel, state = out
    assert tab["selected"] == "instance" if isinstance(tab, dict) else tab.selected == "instance"
    assert picture.ndim == 3 and picture.shape[2] == 3 and picture.shape[0] > 384
    assert f"image {first[0]}, query {first[1]}" in facts and "kept by the run: DDTF **yes**" in facts
    assert where.startswith(f"**1 of {len(state['keys'])}**")
    assert any(t.name == "teacher" for t in fig.data)

    out = wb.instance.step(state, 1, ["pseudo mask"])
    state = out[-1]
    second = tuple(int(v) for v in state["keys"][1])
    assert state["pos"] == 1 and f"image {second[0]}, query {second[1]}" in out[2]
    assert wb.instance.step(state, -2, [])[-1]["pos"] == len(state["keys"]) - 1  # wraps around

    msg = wb.instance.decide(dict(state, pos=0), "accept", None, [])[0]
    assert "accepted (saved)" in msg
    msg = wb.instance.decide(dict(state, pos=1), "relabel", 4, [])[0]
    assert "relabelled as bus" in msg
    edits = CurationStore(runs_root / "demo").edits(1000)
    assert {(int(r.image_id), int(r.query), r.action) for r in edits.itertuples()} == {
        (*first, "accept"), (*second, "relabel")}
    facts = wb.instance.step(dict(state, pos=0), 1, [])[2]
    assert "curation: **relabel** as bus" in facts

    view = wb.curate.show("demo", 1000, state)
    assert "**1** accepted, **1** relabelled, **0** rejected" in view[1]
    assert len(view[2]) == 2 and isinstance(view[0], go.Figure)

    message, path = wb.curate.export("demo", 1000, "one.json", False)
    assert "Wrote **2** annotations" in message and "data.extra_labeled_json=" in message
    coco = json.loads(Path(path).read_text())
    cats = categories(8)
    by_query = {(a["image_id"], a["pldc_source"]["query"]): a["category_id"] for a in coco["annotations"]}
    ckpt = wb.ctx.checkpoint("demo", 1000)
    pred = int(ckpt.queries.iloc[ckpt.positions([first])[0]]["pred_class"])
    assert by_query == {first: cats[pred]["id"], second: cats[4]["id"]}
    assert Path(path).parent == (runs_root / "demo" / "curation").resolve()

    # a whole set at once, then cleared again
    small = dict(state, keys=state["keys"][2:5])
    assert "accept: 3 pseudo-labels" in wb.curate.apply(small, "accept", None, "demo", 1000)
    assert "choose the class" in wb.curate.apply(small, "relabel", None, "demo", 1000)
    wb.curate.apply(small, "clear", None, "demo", 1000)
    assert len(CurationStore(runs_root / "demo").edits(1000)) == 2


def test_scatter_click_opens_the_point(wb):
    ckpt = wb.ctx.checkpoint("demo", 500)
    key = tuple(int(v) for v in ckpt.queries[["image_id", "query"]].iloc[7])
    payload = json.dumps({"x": 0.5, "y": 0.5, "customdata": {"0": key[0], "1": key[1]}, "t": 1})
    out = wb.instance.open_from_scatter(payload, "demo", 500, None, ["pseudo mask"])
    assert f"image {key[0]}, query {key[1]}" in out[2] and out[-1]["iteration"] == 500


# --------------------------------------------------------------------------- other tabs
def test_confusion_errors_dicc_and_compare(wb, monkeypatch):
    fig, pairs, _, note, _ = wb.confusion.show("demo", 1000, "counts", "before DICC", "all queries")
    assert isinstance(fig, go.Figure) and {"pseudo-label class", "GT class", "count"} <= set(pairs.columns)
    ckpt = wb.ctx.checkpoint("demo", 1000)
    table, info, state = wb.confusion.cell("demo", 1000, "car", "car", "before DICC", "all queries")
    rows = ckpt.queries.iloc[ckpt.positions(map(tuple, state["keys"]))]
    assert len(rows) and (rows["pred_class"] == 3).all() and (rows["gt_class"] == 3).all() and (rows["iou"] > 0.5).all()
    assert int(fig.data[0].z[3][3]) == len(rows)
    bg = wb.confusion.cell("demo", 1000, "background", "car", "before DICC", "all queries")
    assert "no pseudo-label to open" in bg[1]
    click = json.dumps({"x": "car", "y": "car", "customdata": None, "t": 2})
    assert len(wb.confusion.click(click, "demo", 1000, "before DICC", "all queries")[2]["keys"]) == len(rows)

    trend, counts, summary, _, _ = wb.errors.show("demo", 1000, "all queries")
    assert isinstance(trend, go.Figure) and list(summary["size"]) == ["all", "small", "medium", "large"]
    assert int(summary.set_index("size").loc["all"].drop(labels=[]).sum()) == int(ckpt.queries["error_type"].notna().sum())
    click = json.dumps({"x": "large", "customdata": ["large", "Cor"], "t": 3})
    _, info, state = wb.errors.click(click, "demo", 1000, "all queries")
    assert "error Cor" in info and "large" in info

    summary, per_class, dicc_trend, corrections, clip = wb.dicc.show("demo", 500)
    assert "DICC ran on" in summary and isinstance(dicc_trend, go.Figure)
    assert "CLIP alone on the teacher's masks" in summary
    assert not clip.data and "pldc clip-crops" in clip.layout.annotations[0].text  # not measured yet
    if len(corrections):
        first = corrections.iloc[0]
        _, _, state = wb.dicc.pick("demo", 500, _Select([first["from"], first["to"]]))
        assert len(state["keys"]) == int(first["count"])
    if len(corrections) > 1:  # a long list of corrections is cut to the most frequent, and says so
        monkeypatch.setattr(dicc_tab, "TABLE_ROWS", 1)
        summary, _, _, cut, _ = wb.dicc.show("demo", 500)
        assert cut.equals(corrections.head(1)) and f"The 1 most frequent of its {len(corrections)} corrections" in summary

    out = wb.compare.show("demo", 1000, "demo", 500, "ddtf", 0.7, 0.85, 0.595, None)
    metrics = out[0]
    assert [t.name for t in metrics.data if t.showlegend is not False] == ["A: demo @ 1000", "B: demo @ 500"]
    assert out.picture_a.ndim == 3 and out.picture_b.ndim == 3 and "kept" in out.note
    assert "choose two" in wb.compare.show("demo", 1000, None, None, "ddtf", 0.7, 0.85, 0.6, None).note
    # the confusion matrices are made only while their accordion is open, and alone when it opens
    closed = wb.compare.show("demo", 1000, "demo", 500, "ddtf", 0.7, 0.85, 0.595, None, "all queries", False)
    assert closed.confusion_a == gr.skip() and closed.confusion_b == gr.skip() and closed.errors.data
    conf_a, conf_b = wb.compare.show_confusions("demo", 1000, "demo", 500, "ddtf", 0.7, 0.85, 0.595, None,
                                                "all queries", True)
    opened = wb.compare.show("demo", 1000, "demo", 500, "ddtf", 0.7, 0.85, 0.595, None, "all queries", True)
    assert conf_a.layout.title.text == opened.confusion_a.layout.title.text == "A: demo @ 1000: confusion of all queries"
    assert np.array_equal(np.asarray(conf_b.data[0].z, dtype=float), np.asarray(opened.confusion_b.data[0].z,
                                                                                  dtype=float), equal_nan=True)


# --------------------------------------------------------------------------- runs and training form
def test_run_states_progress_and_logs(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    lines = [{"iter": i, "phase": "semi", "loss": 1.0, "sec_per_iter": 0.5} for i in range(1, 101)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (run / "status.json").write_text(json.dumps({"state": "running", "iteration": 80, "max_iters": 200,
                                                 "phase": "semi", "pid": os.getpid(), "updated": time.time(),
                                                 "best": {"AP": 12.5, "iter": 80}, "error": None}))
    info = runs.run_info(run)
    assert (info.state, info.iteration, info.max_iters, info.best_ap) == ("running", 100, 200, 12.5)
    assert info.eta_s == pytest.approx(100 * 0.5) and info.fraction == 0.5
    assert runs.runs_table([info]).iloc[0].to_dict() == {"run": "r", "state": "running",
                                                         "progress": "100/200 (ETA 50 s)", "best AP": "12.50%"}
    dead = 2 ** 22 + 12345
    (run / "status.json").write_text(json.dumps({"state": "running", "pid": dead, "updated": time.time()}))
    (run / "train.log").write_text("boom: out of memory\n")
    info = runs.run_info(run)
    assert info.state == "died" and "out of memory" in info.error
    (run / "launch.json").write_text(json.dumps({"pid": os.getpid(), "started": time.time() + 5}))
    assert runs.run_info(run).state == "starting"

    reader = runs.LogReader(run / "metrics.jsonl")
    frame, changed = reader.read()
    assert changed and len(frame) == 100 and "iteration" in frame
    assert reader.read()[1] is False
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"iter": 101, "loss": 0.5}) + "\n" + '{"iter": 102, "lo')  # last line half written
    frame, changed = reader.read()
    assert changed and frame["iteration"].tolist()[-1] == 101
    (run / "metrics.jsonl").write_text(json.dumps({"iter": 1, "loss": 2.0}) + "\n")  # rewritten by a resume
    assert reader.read()[0]["iteration"].tolist() == [1]
    assert runs.format_duration(3725) == "1 h 02 min" and runs.format_duration(75) == "1 min 15 s"


def test_live_view_and_tick(wb):
    progress, losses, counts, ap, per_class, log, stop, resume = wb.train.live("demo")
    assert "demo" in progress and isinstance(losses, go.Figure)
    assert {t.name for t in losses.data} == {"total", "supervised", "unsupervised (PL-DC)"}
    # both evaluations of the fabricated run are the teacher's: one marked trace per metric, in percent
    assert [t.name for t in ap.data] == ["AP · teacher", "AP50 · teacher", "AP75 · teacher"]
    assert all("markers" in t.mode for t in ap.data) and ap.layout.yaxis.title.text == "mask AP (%)"
    assert all(text.endswith("%") for t in ap.data for text in t.text)
    # each class's AP at the teacher's first and last evaluation, in percent
    assert [t.name for t in per_class.data] == ["iteration 500", "iteration 1000"]
    assert per_class.layout.yaxis.ticksuffix == "%" and all(x.endswith("%") for t in per_class.data for x in t.text)
    assert wb.train.live(None).per_class.layout.annotations[0].text == "no run selected"
    # the run has finished: there is nothing to stop or resume
    assert runs.run_info(wb.ctx.run_path("demo")).state == "finished"
    assert stop.interactive is False and resume.interactive is False
    first = wb.sidebar.tick("demo", 1000, None)
    assert isinstance(first[0], pd.DataFrame) and first[0]["run"].tolist() == ["demo"]
    second = wb.sidebar.tick("demo", 1000, first[-1])
    assert second[0] == gr.skip() and second[1] == gr.skip()  # nothing changed: nothing re-sent
    assert second[-2] == gr.skip()
    assert wb.sidebar.tick("demo", None, None)[-2].value == 1000  # records appeared: the latest is selected


def test_form_refuses_invalid_settings(wb, roots, tmp_path):
    runs_root, data_root = roots
    config = str(ROOT / "configs" / "smoke.yaml")
    values = wb.train.config_form(config)
    assert values.message == "" and values.form.dataset == "synthetic"

    def start(**kw):
        name = kw.pop("name", "new-run")
        form = dict(dataset="synthetic", percent=25, split_seed=0, filter="ddtf", c_t=0.85, m_t=0.9, s_t=0.765,
                    dicc=False, clip_weights="", pmua=True, unsup_weight=1.0, ema_alpha=0.999, max_iters=8,
                    burn_in_iters=4)
        return wb.train.start(config, name, TrainForm(**{**form, **kw}))[0]

    assert "Not started: pldc.c_t: must be in [0, 1], got 1.5" in start(c_t=1.5)
    assert "train.burn_in_iters: must be in [0, max_iters=8]" in start(burn_in_iters=20)
    assert "train.ema_alpha" in start(ema_alpha=1.0)
    assert "run name '../evil'" in start(name="../evil")
    assert "run 'demo' exists already" in start(name="demo")
    assert "training annotations not found" in start()  # the data folder is empty
    assert not (runs_root / "new-run").exists() and not (runs_root.parent / "evil").exists()


def test_dicc_tab_shows_clip_on_gt_crops_when_measured(tmp_path):
    fabricate_run(tmp_path / "runs" / "r", n_images=4, n_queries=4, iterations=(500,))
    # 3 crops of class 0 (2 right), 1 of class 1 (right), CLIP never says class 2
    pd.DataFrame({"gt_class": [0, 0, 0, 1], "clip_pred": [0, 0, 1, 1]}).to_parquet(
        tmp_path / "runs" / "r" / "clip_gt_crops.parquet")
    bench = App(AppSettings(runs_root=tmp_path / "runs", data_root=tmp_path))
    clip = bench.dicc.show("r", 500)[-1]
    bars = {t.name: t for t in clip.data}
    assert list(bars["precision"].y[:2]) == pytest.approx([1.0, 0.5])
    assert list(bars["recall"].y[:2]) == pytest.approx([2 / 3, 1.0])
    # a table of several DICC modes: a bar per mode in a precision and a recall panel
    pd.DataFrame({"mode": ["box"] * 4 + ["mask_pool"] * 4, "gt_class": [0, 0, 0, 1] * 2,
                  "clip_pred": [0, 0, 1, 1, 1, 1, 1, 1]}).to_parquet(tmp_path / "runs" / "r" / "clip_gt_crops.parquet")
    clip = bench.dicc.show("r", 500)[-1]
    assert [t.name for t in clip.data] == ["box", "box", "mask_pool", "mask_pool"]
    assert list(clip.data[3].y[:2]) == pytest.approx([0.0, 1.0])  # mask_pool's recall
    (tmp_path / "runs" / "r" / "clip_gt_crops.parquet").write_bytes(b"broken")
    assert "clip_gt_crops.parquet" in bench.dicc.show("r", 500)[-1].layout.annotations[0].text


def test_form_checks_split_and_dicc(tiny_data, tmp_path):
    bench = App(AppSettings(tmp_path / "runs", tiny_data))
    config = str(ROOT / "configs" / "smoke.yaml")
    form = dict(dataset="synthetic", percent=25, split_seed=0, filter="ddtf", c_t=0.0, m_t=0.0, s_t=0.765,
                dicc=False, clip_weights="", pmua=True, unsup_weight=1.0, ema_alpha=0.999, max_iters=8,
                burn_in_iters=4)

    def start(**kw):
        return bench.train.start(config, "x", TrainForm(**{**form, **kw}))[0]

    assert "no split for percent 7 (available: 25)" in start(percent=7)
    assert "percent 25 has no seed 3" in start(split_seed=3)
    assert "DICC needs CLIP weights" in start(dicc=True)
    assert "is not a file" in start(dicc=True, clip_weights="RN50.pt")
    assert "Splits available: 25% (seeds 0)" == bench.train.split_info("synthetic")
    assert not (tmp_path / "runs" / "x").exists()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from tests.tiny import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("data"), n_train=12, n_val=4)


def _wait_state(run: Path, states: set[str], timeout: float, also=lambda info: True) -> runs.RunInfo:
    end = time.time() + timeout
    while time.time() < end:
        info = runs.run_info(run)
        if info.state in states and also(info):
            return info
        if info.state in ("failed", "died"):
            pytest.fail(f"run {run.name} {info.state}: {info.error}")
        time.sleep(0.5)
    pytest.fail(f"run {run.name} did not reach {states} in {timeout} s; now {runs.run_info(run).state}; "
                f"log: {(run / 'train.log').read_text()[-2000:] if (run / 'train.log').exists() else ''}")


@pytest.fixture
def ends_its_runs(tmp_path):
    """Kill (by process id) any training process the test leaves behind, e.g. after a failed assert."""
    yield
    import signal

    for launch_file in (tmp_path / "runs").glob("*/launch.json"):
        pid = json.loads(launch_file.read_text())["pid"]
        if runs.pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    launch.reap()


@pytest.mark.slow
def test_start_stop_and_resume_a_real_run(tiny_data, tmp_path, ends_its_runs):
    # a very small model and no evaluation or records, so that each step takes a moment
    config = tmp_path / "tiny.yaml"
    config.write_text(f"base: {ROOT / 'configs' / 'smoke.yaml'}\n"
                      "data: {image_size: 64, eval_images: 2}\n"
                      "model: {train_num_points: 64}\n"
                      "train: {eval_every: 100000, checkpoint_every: 100000}\n"
                      "records: {enabled: false}\n")
    bench = App(AppSettings(tmp_path / "runs", tiny_data))
    message, table, _ = bench.train.start(str(config), "live", TrainForm("synthetic", 25, 0, "ddtf", 0.0, 0.0, 0.765,
                                                                      False, "", True, 1.0, 0.999, 100000, 2))
    assert message.startswith("Started run **live**"), message
    run = tmp_path / "runs" / "live"
    assert json.loads((run / "launch.json").read_text())["pid"] > 0
    assert runs.run_info(run).state in ("starting", "running")
    _wait_state(run, {"running"}, 240, also=lambda info: info.iteration >= 1)
    assert "asked run 'live' to stop" in bench.train.stop("live")
    info = _wait_state(run, {"stopped"}, 240)
    assert list((run / "checkpoints").glob("*.pt")) and info.iteration >= 1
    assert "not running" in bench.train.stop("live")

    assert bench.train.resume("live").startswith("Resuming run **live**")
    again = bench.train.resume("live")
    assert "is starting; stop it first" in again or "is running; stop it first" in again
    _wait_state(run, {"running"}, 240, also=lambda i: i.iteration > info.iteration)
    bench.train.stop("live")
    final = _wait_state(run, {"stopped"}, 240)
    assert final.iteration > info.iteration
    assert "started by the workbench" in (run / "train.log").read_text()
    launch.reap()


# --------------------------------------------------------------------------- views that would open empty
@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """A workbench on a run whose filter kept no pseudo-label (thresholds no query reaches)."""
    runs_root = tmp_path_factory.mktemp("strict") / "runs"
    fabricate_run(runs_root / "strict", n_images=10, n_queries=8, iterations=(500, 1000),
                  thresholds={"c_t": 1.0, "m_t": 1.0})
    bench = App(AppSettings(runs_root=runs_root, data_root=runs_root.parent))
    ckpt = bench.ctx.checkpoint("strict", 1000)
    assert ckpt.run_kept == 0 and ckpt.has_gt
    return bench, ckpt


def _text(fig) -> str:
    return " ".join(a.text for a in fig.layout.annotations).replace("<br>", " ")


def test_kept_only_views_switch_to_all_queries_and_say_why(strict, wb):
    bench, ckpt = strict
    best = ckpt.best_point()
    hint = f"c_t = {best['c_t']:.2f} and m_t = {best['m_t']:.2f}"
    fig, pairs, pairs_note, note, subset = bench.confusion.show("strict", 1000, "counts", "before DICC",
                                                                "kept by the run")
    assert subset.value == "all queries"                         # the radio follows
    assert "kept no pseudo-label at iteration 1,000" in note and "showing all queries instead" in note
    assert hint in note
    counts = np.asarray(fig.data[0].z, dtype=float)
    assert counts[:-1].sum() == ckpt.queries["iou"].notna().sum()  # every query with GT is counted
    assert len(pairs) and pairs_note == "**Most confused pairs**"

    trend, bars, table, note, subset = bench.errors.show("strict", 1000, "kept by the run")
    assert subset.value == "all queries" and "kept no pseudo-label" in note and "Click a bar" in note
    assert bars.data and int(table.set_index("size").loc["all"].sum()) == ckpt.queries["error_type"].notna().sum()

    # where the run kept some, nothing switches
    view = wb.confusion.show("demo", 1000, "counts", "before DICC", "kept by the run")
    assert view.subset == gr.skip() and "kept no" not in view.note and view.note.startswith("Click a cell")

    out = bench.compare.show("strict", 1000, "strict", 500, "ddtf", 1.0, 1.0, 0.9, None)
    assert out.subset.value == "all queries" and "showing all queries instead" in out.note
    assert "all queries" in out.errors.layout.title.text and out.errors.data
    assert np.isfinite(np.asarray(out.confusion_a.data[0].z, dtype=float)).any()
    assert "nothing kept at these thresholds" in out.metrics.layout.title.subtitle.text

    summary, per_class, trend, corrections, _ = bench.dicc.show("strict", 1000)
    assert "nothing to correct" in summary and "nothing to correct" in _text(per_class)
    assert corrections.empty


def test_empty_listing_and_what_if_say_why(strict, tmp_path):
    bench, ckpt = strict
    args = ("strict", 1000, "ddtf", 1.0, 1.0, 0.9, "IoU", "any", "any", "run_kept", "s", True)
    scatter, what_if, table, info, state = bench.pseudo_labels.show(*args)
    assert table.empty and "**0** of" in info and "kept no pseudo-label" in info
    # ground truth is known: the what-if must not say it is missing, but that nothing is kept
    assert "need ground truth" not in _text(what_if)
    assert "nothing is kept at these thresholds" in _text(what_if)
    best = ckpt.best_point()
    assert f"c_t = {best['c_t']:.2f} and m_t = {best['m_t']:.2f}" in _text(what_if)

    no_gt = App(AppSettings(tmp_path, tmp_path))
    fabricate_run(tmp_path / "nogt", n_images=4, n_queries=4, iterations=(500,), with_gt=False,
                  thresholds={"c_t": 1.0, "m_t": 1.0})
    what_if = no_gt.pseudo_labels.show("nogt", 500, "ddtf", 1.0, 1.0, 0.9, "IoU", "any", "any", "all", "s", True)[1]
    assert "need ground truth" in _text(what_if)


def test_dicc_off_is_named_as_such(tmp_path):
    fabricate_run(tmp_path / "off", n_images=4, n_queries=4, iterations=(500, 1000), with_dicc=False)
    bench = App(AppSettings(tmp_path, tmp_path))
    summary, per_class, trend, _, _ = bench.dicc.show("off", 1000)
    assert summary.startswith("DICC was off in this run") and "DICC was off" in _text(trend)


def test_instance_tab_says_how_to_open_one(wb):
    view = wb.instance.view(None, ["pseudo mask"], switch=False)
    assert "click a row" in view.where and view.picture is None


# --------------------------------------------------------------------------- train tab
def test_log_tail_of_a_command_line_run_shows_its_metrics(tmp_path):
    run = tmp_path / "cli-run"
    run.mkdir()
    assert "No train.log, metrics.jsonl or eval.jsonl" in runs.log_tail(run)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"iter": i, "phase": "semi", "loss": 1.0 / i}) + "\n"
                                               for i in range(1, 30)))
    (run / "eval.jsonl").write_text(json.dumps({"iter": 29, "model": "teacher", "AP": 12.3456, "AP50": 20.0}) + "\n")
    tail = runs.log_tail(run, 5).splitlines()
    assert tail[0].startswith("No train.log: this run was started from the command line")
    assert tail[1:6] == [f"iter {i} · semi · loss {1.0 / i:.4g}" for i in range(25, 30)]
    assert tail[-1] == "evaluation: iter 29 · model teacher · AP 12.35% · AP50 20.00%"
    (run / "train.log").write_text("step 1\nstep 2\n")
    assert runs.log_tail(run) == "step 1\nstep 2"


def test_stop_and_resume_follow_the_run_state(tmp_path):
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    status = {"state": "running", "iteration": 5, "max_iters": 10, "pid": os.getpid(), "updated": time.time()}
    (run / "status.json").write_text(json.dumps(status))
    info = runs.run_info(run)
    assert launch.can_stop(info) and not launch.can_resume(run, info)
    (run / "status.json").write_text(json.dumps({**status, "state": "stopped"}))
    assert not launch.can_resume(run)                            # no checkpoint yet
    (run / "checkpoints" / "iter_0000005.pt").write_bytes(b"x")
    info = runs.run_info(run)
    assert not launch.can_stop(info) and launch.can_resume(run, info)
    (run / "status.json").write_text(json.dumps({**status, "state": "finished", "iteration": 10}))
    info = runs.run_info(run)
    assert not launch.can_stop(info) and not launch.can_resume(run, info)


def test_form_takes_a_registry_file(tiny_data, tmp_path):
    bench = App(AppSettings(tmp_path / "runs", tiny_data))
    (tiny_data / "registries").mkdir(exist_ok=True)
    (tiny_data / "registries" / "mine.yaml").write_text(
        "datasets:\n  mine:\n    train_json: ../synthetic/annotations/instances_train.json\n"
        "    train_images: ../synthetic/train\n    val_json: ../synthetic/annotations/instances_val.json\n"
        "    val_images: ../synthetic/val\n")
    (tiny_data / "splits" / "mine.json").write_text((tiny_data / "splits" / "synthetic.json").read_text())
    dropdown, text = bench.train.registry_changed("registries/mine.yaml", "synthetic")
    assert "mine" in [c[0] if isinstance(c, tuple) else c for c in dropdown.choices] and "mine" in text
    # the form's registry reaches the config as data.registry_file, and the dataset resolves through it
    settings = TrainForm("mine", 25, 0, "ddtf", 0.85, 0.9, 0.765, False, "", True, 1.0, 0.999, 8, 4,
                         registry_file="registries/mine.yaml").settings()
    cfg, overrides = launch.check_settings(ROOT / "configs" / "smoke.yaml", settings, tiny_data)
    assert Path(cfg.data.registry_file) == (tiny_data / "registries" / "mine.yaml").resolve()
    assert cfg.data.dataset == "mine"
    # a file that is not there, or outside the data folder, is refused with the reason
    assert "not found" in bench.train.registry_changed("registries/absent.yaml", "synthetic")[1]
    assert "outside" in bench.train.registry_changed("../elsewhere.yaml", "synthetic")[1]
    with pytest.raises(launch.LaunchError, match="outside"):
        launch.check_settings(ROOT / "configs" / "smoke.yaml",
                              launch.TrainSettings(registry_file="../elsewhere.yaml"), tiny_data)
