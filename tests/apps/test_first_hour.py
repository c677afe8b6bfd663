"""A newcomer's first hour (issue 14), in headless Chromium: open the report, click through the app's
tabs, open an instance, curate it and export, on the tests' fabricated run and on one whose filter kept
no pseudo-label.

On every page and tab it checks what a newcomer sees, not how it is built:

- no view is empty without saying why: a figure with nothing drawn carries a reason of its own (a
  confusion matrix counts as empty when only its background row, the missed GT, has values), an empty
  table has its explaining line next to it, the Instance tab says how to open one;
- every AP on screen carries its unit: no "AP 22.81" without "%", an axis about AP says "(%)", a table
  column about AP holds percentages;
- in the report, each error-type abbreviation is defined where it is first used.
"""
from __future__ import annotations

import json
import re
import time

import pytest

from pldc_core.records.fabricated_run import fabricate_run
from tests.apps.browser import Page, chromium, running_app, skip_without_chromium, wait_for
from workbench.explain import ERROR_TYPE_NAMES
from workbench.report import write_report

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# What a figure, a table or a picture of the visible page shows. ``empty``: nothing drawn; ``why``: the
# text the figure itself carries (its annotations).
AUDIT_JS = r"""
const shown = (el) => el && el.offsetParent !== null && el.getBoundingClientRect().width > 0;
const finite = (values) => {
  if (!values) return false;
  for (const v of values) {
    if (Array.isArray(v) || ArrayBuffer.isView(v)) { if (finite(v)) return true; }
    else if (v !== null && v !== '' && Number.isFinite(Number(v))) return true;
  }
  return false;
};
const drawn = (t) => {
  if (t.visible === false) return false;
  if (t.type === 'heatmap') {  // a confusion matrix whose only values are the missed GT counts nothing
    const rows = Array.from(t.z || []);
    const labels = Array.from(t.y || []);
    return rows.some((row, i) => labels[i] !== 'background' && finite(row));
  }
  return finite(t.type === 'bar' && t.orientation === 'h' ? t.x : t.y);
};
const figures = [...document.querySelectorAll('.js-plotly-plot')].filter(shown).map((gd) => {
  const host = gd.id && gd.id.startsWith('fig-') ? gd : gd.closest('[id]');
  const layout = gd._fullLayout || {};
  const axes = Object.keys(layout).filter((k) => /^[xy]axis\d*$/.test(k))
    .map((k) => (layout[k].title && layout[k].title.text) || '');
  return {id: host ? host.id : '?', empty: !(gd._fullData || []).some(drawn),
          why: (gd.layout.annotations || []).map((a) => a.text || '').join(' ').replace(/<br>/g, ' '),
          axes: axes, text: [...gd.querySelectorAll('text')].map((t) => t.textContent).join(' | ')};
});
const tables = [...document.querySelectorAll('[role=grid]')].filter(shown).map((grid) => {
  const heads = [...grid.querySelectorAll('th[title]')].map((h) => h.getAttribute('title'));
  const cells = {};
  grid.querySelectorAll('[data-testid^=cell-]').forEach((c) => {
    const [, r, col] = c.getAttribute('data-testid').split('-');
    (cells[col] = cells[col] || []).push(c.innerText.trim());
  });
  return {id: grid.closest('[id]').id, rows: Number(grid.getAttribute('aria-rowcount')) - 1, heads: heads,
          columns: heads.map((_, i) => cells[i] || [])};
});
const htmlTables = [...document.querySelectorAll('table.table')].filter(shown).map((t) => ({
  rows: t.querySelectorAll('tbody tr').length, next: (t.nextElementSibling || {}).className || ''}));
return {figures: figures, tables: tables, htmlTables: htmlTables, text: document.body.innerText};
"""

# An empty app table is explained by the line next to it.
TABLE_NOTES = {"pl-table": "pl-info", "cf-pairs": "cf-pairs-note", "cf-table": "cf-note", "er-table": "er-note",
               "dc-table": "dc-summary", "dc-list": "dc-note", "cu-table": "cu-summary"}
BARE_AP = re.compile(r"\bAP(?:50|75|s|m|l)?\b[ :=]*(\d+(?:\.\d+)?)(?![\d.]*\s*%)")
MIN_REASON = 20  # characters: "nothing to show" is no reason


def audit(page: Page, where: str) -> dict:
    """Check the visible page: every empty view explained, every AP with its unit. Returns what it saw."""
    seen = page.d.execute_script(AUDIT_JS)
    problems = []
    for fig in seen["figures"]:
        if fig["empty"] and len(fig["why"].strip()) < MIN_REASON:
            problems.append(f"figure {fig['id']} is empty and does not say why ({fig['why']!r})")
        for title in fig["axes"]:
            if re.search(r"\bAP\b", title) and "%" not in title:
                problems.append(f"figure {fig['id']}: axis {title!r} has no unit")
        for match in BARE_AP.finditer(fig["text"]):
            problems.append(f"figure {fig['id']}: {match.group(0)!r} without its unit")
    for table in seen["tables"]:
        if table["rows"] == 0:
            note = TABLE_NOTES.get(table["id"])
            text = page.text(note) if note else ""
            if len(text.strip()) < MIN_REASON:
                problems.append(f"table {table['id']} is empty and nothing says why ({note}: {text!r})")
        for head, values in zip(table["heads"], table["columns"]):
            if re.search(r"\bAP\b", head):
                problems += [f"table {table['id']}: {head} {v!r} without its unit"
                             for v in values if v and "%" not in v]
    for table in seen["htmlTables"]:
        if table["rows"] == 0:
            problems.append("an HTML table with no row")
    problems += [f"{m.group(0)!r} without its unit" for m in BARE_AP.finditer(seen["text"])]
    assert not problems, f"{where}: " + "; ".join(problems)
    return seen


def figure(seen: dict, elem_id: str) -> dict:
    return next(f for f in seen["figures"] if f["id"] == elem_id)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The fabricated run ('demo') and one whose thresholds no query reaches ('strict'), with their reports."""
    skip_without_chromium()
    root = tmp_path_factory.mktemp("first-hour")
    runs_root = root / "runs"
    fabricate_run(runs_root / "demo", n_images=8, n_queries=6, iterations=(500, 1000))
    fabricate_run(runs_root / "strict", n_images=8, n_queries=6, iterations=(500, 1000),
                  thresholds={"c_t": 1.0, "m_t": 1.0})
    reports = {name: write_report(runs_root / name, png=False) for name in ("demo", "strict")}
    (root / "data").mkdir()
    return root, runs_root, reports


@pytest.fixture(scope="module")
def driver(runs, tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as browser:
        yield browser


def test_the_report_explains_every_empty_view(runs, driver, tmp_path):
    _, _, reports = runs
    page = Page(driver, tmp_path)
    driver.get(reports["demo"].as_uri())
    wait_for(lambda: driver.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length")
             >= 20, "the report's figures")
    seen = audit(page, "report")
    text = seen["text"]
    assert re.search(r"AP \d+\.\d\d% · AP50 \d+\.\d\d%", text)  # the last evaluation, in the summary
    assert "mask AP (%)" in figure(seen, "fig-training_eval")["axes"]
    for etype, name in ERROR_TYPE_NAMES.items():  # each abbreviation is defined where it first appears
        first = re.search(rf"\b{etype}\b", text)
        if first:
            assert name in text[max(0, first.start() - 30):first.end() + 30], (etype, text[first.start() - 60:][:120])
    # the heat map's legend sits clear of its colour bar
    legend, bar = driver.execute_script(
        "const gd = document.getElementById('fig-thresholds_f1'); const r = (s) => gd.querySelector(s)"
        ".getBoundingClientRect().toJSON(); return [r('.legend'), r('.colorbar')];")
    assert legend["bottom"] <= bar["top"] or legend["top"] >= bar["bottom"] or legend["right"] <= bar["left"]

    driver.get(reports["strict"].as_uri())
    wait_for(lambda: driver.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length")
             >= 15, "the kept-nothing report's figures")
    seen = audit(page, "report of a run that kept nothing")
    why = driver.execute_script("return [...document.querySelectorAll('p.why')].map(p => p.innerText)")
    assert any("kept no pseudo-label" in w and "all queries" in w for w in why), why
    assert "kept no pseudo-label" in figure(seen, "fig-errors_kept")["why"]
    assert not figure(seen, "fig-confusion")["empty"]  # all queries, since the run kept none
    assert "it had nothing to correct" in seen["text"]


def test_the_app_walk_of_a_first_hour(runs, driver, tmp_path):
    from selenium.webdriver.common.by import By

    root, runs_root, _ = runs
    page = Page(driver, tmp_path)
    started = time.time()

    def mark(step: str) -> None:
        print(f"{time.time() - started:6.1f} s  {step}")

    with running_app(runs_root, root / "data", root / "app.log", run="demo") as url:
        mark("app started")
        driver.get(url)
        wait_for(lambda: page.plot("pl-scatter", "gd.querySelectorAll('.point').length"), "the scatter's points")
        wait_for(lambda: "of 48 queries" in page.text("pl-info"), "the listing")
        audit(page, "Pseudo-labels tab")

        page.tab("Train")
        wait_for(lambda: page.plot("tr-ap", "gd.data.length"), "the AP plot")
        seen = audit(page, "Train tab")
        assert "finished" in page.text("tr-progress") and "%" in page.text("tr-progress")
        for button in ("tr-stop", "tr-resume"):  # a finished run: nothing to stop or resume
            assert not driver.find_element(By.CSS_SELECTOR, f"#{button}").is_enabled(), button
        # the small plots: the toolbar is clear of the title, and each plot fits in its box
        for plot in ("tr-loss", "tr-counts", "tr-ap"):
            title, bar, box, svg = driver.execute_script(
                f"const el = document.getElementById('{plot}'); const r = (x) => x.getBoundingClientRect().toJSON();"
                "return [r(el.querySelector('.gtitle')), r(el.querySelector('.modebar')), r(el),"
                " r(el.querySelector('.main-svg'))];")
            assert title["right"] <= bar["left"] or title["bottom"] <= bar["top"], (plot, title, bar)
            assert svg["right"] <= box["right"] + 1 and title["right"] <= box["right"], (plot, svg, box)
        # a run made outside the workbench has no train.log: the log shows its metrics instead, and says so
        page.click("#tr-log-accordion button, #tr-log-accordion .label-wrap")
        log = wait_for(lambda: driver.find_element(By.CSS_SELECTOR, "#tr-log textarea").get_attribute("value"),
                       "the log")
        assert log.startswith("No train.log: this run was started from the command line") and "AP " in log
        assert not BARE_AP.search(log)
        mark("train")

        page.tab("Instance")
        wait_for(lambda: "click a row" in page.text("in-where"), "the Instance tab's hint")
        audit(page, "Instance tab, nothing open")

        for name, plot in (("Confusion", "cf-heatmap"), ("Errors", "er-counts"), ("DICC", "dc-per-class"),
                           ("Compare", "cmp-metrics")):
            page.tab(name)
            wait_for(lambda: page.plot(plot, "gd.data.length || (gd.layout.annotations || []).length"), name)
            audit(page, f"{name} tab")
        mark("tabs")

        # open an instance from the listing, accept it, export the curated set
        page.tab("Pseudo-labels")
        page.cell("pl-table", 0, 2).click()
        wait_for(lambda: "1 of" in page.text("in-where"), "the instance")
        wait_for(lambda: driver.find_element(By.CSS_SELECTOR, "#in-image img").get_attribute("src"), "the picture")
        assert re.search(r"error type: \w+ \(", page.text("in-facts"))  # its error type, spelled out
        audit(page, "an open instance")
        page.click("#in-accept")
        wait_for(lambda: "accepted (saved)" in page.text("in-message"), "the accept confirmation")
        page.tab("Curate")
        wait_for(lambda: "1 accepted" in page.text("cu-summary"), "the decision in Curate")
        audit(page, "Curate tab")
        page.type_into("cu-file", "first_hour.json")
        page.click("#cu-export")
        wait_for(lambda: "Wrote" in page.text("cu-export-message"), "the export")
        exported = json.loads((runs_root / "demo" / "curation" / "first_hour.json").read_text())
        assert len(exported["annotations"]) == 1
        mark("instance, curate, export")

        # the run that kept nothing: the kept-only views switch to all queries and say why
        page.choose("run-dd", "strict")
        wait_for(lambda: "strict" in page.text("ckpt-summary") and "0 kept" in page.text("ckpt-summary"),
                 "the strict run in the sidebar")
        for name, radio, note, plot in (("Confusion", "cf-subset", "cf-note", "cf-heatmap"),
                                        ("Errors", "er-subset", "er-note", "er-counts"),
                                        ("Compare", "cmp-subset", "cmp-note", "cmp-errors")):
            page.tab(name)
            wait_for(lambda: "all queries" in driver.find_element(
                By.CSS_SELECTOR, f"#{radio} input:checked").get_attribute("value"), f"{name}: all queries")
            wait_for(lambda: re.search(r"kept no pseudo-label|Nothing passes|No query passes", page.text(note)),
                     f"{name}: why")
            assert not figure(audit(page, f"{name} tab, run that kept nothing"), plot)["empty"]
        page.tab("DICC")
        wait_for(lambda: "nothing to correct" in page.text("dc-summary"), "DICC: why it changed nothing")
        audit(page, "DICC tab, run that kept nothing")
        page.tab("Pseudo-labels")
        wait_for(lambda: "nothing is kept" in (page.plot("pl-whatif", "gd.layout.annotations.map(a => a.text)"
                                                         ".join(' ')") or ""), "the what-if's reason")
        assert "need ground truth" not in page.plot("pl-whatif", "gd.layout.annotations.map(a => a.text).join(' ')")
        page.choose("pl-status", "kept by the run")
        wait_for(lambda: "kept no pseudo-label" in page.text("pl-info"), "why the listing is empty")
        audit(page, "Pseudo-labels tab, run that kept nothing")
        mark("run that kept nothing")
