"""The workbench in a real browser: `pldc app` on a fabricated run, driven by headless Chromium.

One walk through the app as a user would take it: every tab, a threshold slider (the figures
must follow), a click on a scatter point and on a table row (each opens the instance), accept
one pseudo-label and relabel another, refuse an invalid training setting, export the curated
set, and check the exported COCO JSON. Screenshots of every tab go to the test's tmp folder (the
README's pictures come from a real run: scripts/screenshots.py).
"""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pldc_core.records.fabricated_run import categories, fabricate_run
from tests.apps.browser import ROOT, Page, chromium, running_app, skip_without_chromium, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    skip_without_chromium()
    root = tmp_path_factory.mktemp("app")
    runs_root, data_root = root / "runs", root / "data"
    fabricate_run(runs_root / "demo", n_images=12, n_queries=8, iterations=(500, 1000))
    data_root.mkdir()
    with running_app(runs_root, data_root, root / "app.log", run="demo") as url:
        yield url, runs_root, root


@pytest.fixture(scope="module")
def driver(server, tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as browser:
        yield browser


def _instance_key(page: Page) -> tuple[int, int]:
    match = re.search(r"image (\d+), query (\d+)", page.text("in-facts"))
    assert match, page.text("in-facts")
    return int(match.group(1)), int(match.group(2))


def test_walk_through_every_tab(server, driver, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, runs_root, _ = server
    page = Page(driver, tmp_path)
    started = time.time()

    def mark(step: str) -> None:
        print(f"{time.time() - started:6.1f} s  {step}")

    driver.get(url)

    # --run demo opens the Pseudo-labels tab at the latest checkpoint, at the run's thresholds
    wait_for(lambda: page.plot("pl-scatter", "gd.querySelectorAll('.point').length"), "the scatter's points")
    wait_for(lambda: "c >= 0.70 and m >= 0.85" in (page.plot("pl-scatter", "gd.layout.title.text") or ""),
             "the run's thresholds in the scatter title")
    assert page.plot("pl-scatter", "gd.layout.shapes.find(s => s.type === 'line' && s.x0 === s.x1).x0") == 0.7
    whatif_before = page.plot("pl-whatif", "gd.layout.title.text")
    kept_before = page.plot("pl-scatter", "gd.layout.title.text")

    # move the c_t slider with the keyboard: the threshold line, the what-if and its marker follow
    slider = driver.find_element(By.CSS_SELECTOR, "#pl-ct input[type=range]")
    driver.execute_script("arguments[0].focus()", slider)
    slider.send_keys(Keys.HOME)  # c_t = 0
    slider.send_keys(Keys.ARROW_RIGHT)  # 0.01
    wait_for(lambda: page.plot("pl-scatter", "gd.layout.shapes.find(s => s.type === 'line' && s.x0 === s.x1).x0")
             == 0.01, "the c_t line to move to 0.01")
    wait_for(lambda: page.plot("pl-whatif", "gd.layout.title.text") != whatif_before, "the what-if to change")
    assert page.plot("pl-scatter", "gd.layout.title.text") != kept_before
    marker_x = page.plot("pl-whatif", "gd.data.filter(t => t.name === 'current').map(t => t.x[0])")
    assert 0.01 in marker_x
    driver.find_element(By.ID, "pl-reset").click()
    wait_for(lambda: page.plot("pl-scatter", "gd.layout.shapes.find(s => s.type === 'line' && s.x0 === s.x1).x0")
             == 0.7, "the run's thresholds back")
    page.click("#pl-color input[value='error type']")
    wait_for(lambda: "Cor (correct)" in page.plot("pl-scatter", "gd.data.map(t => t.name)"),
             "points coloured by error type")
    slider = driver.find_element(By.CSS_SELECTOR, "#pl-ct input[type=range]")
    driver.execute_script("arguments[0].focus()", slider)
    slider.send_keys(Keys.PAGE_UP)  # 0.70 -> 0.80: the current setting and the run's part on the what-if
    wait_for(lambda: page.plot("pl-scatter", "gd.layout.shapes.find(s => s.type === 'line' && s.x0 === s.x1).x0")
             == 0.8, "the c_t line at 0.80")
    page.shot("pseudo_labels")
    mark("pseudo-labels")

    # a click on a scatter point opens that instance
    point = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#pl-scatter .point"), "scatter points")[-1]
    ActionChains(driver).move_to_element(point).click().perform()
    wait_for(lambda: "image" in page.text("in-facts"), "the instance opened from the scatter")

    # a row of the table opens the instance, browsing the table's set
    page.tab("Pseudo-labels")
    page.choose("pl-status", "kept by the run")
    wait_for(lambda: "kept by the run" in page.text("pl-info"), "the table filtered to the run's pseudo-labels")
    first = page.cell("pl-table", 0, 0).text
    page.cell("pl-table", 0, 2).click()
    wait_for(lambda: "1 of" in page.text("in-where"), "the instance view at the first row")
    accepted = _instance_key(page)
    assert str(accepted[0]) == first
    page.click("#in-accept")
    wait_for(lambda: "accepted (saved)" in page.text("in-message"), "the accept confirmation")

    page.click("#in-next")
    wait_for(lambda: "2 of" in page.text("in-where"), "the next instance")
    relabelled = _instance_key(page)
    assert relabelled != accepted
    box = driver.find_element(By.CSS_SELECTOR, "#in-relabel-class input")
    box.click()
    options = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "ul[role=listbox] li"), "the class choices")
    teacher_class = box.get_attribute("value")
    target = next(o for o in options if o.text.strip() not in ("", teacher_class))
    new_class = target.text.strip()
    target.click()
    page.click("#in-relabel")
    wait_for(lambda: f"relabelled as {new_class}" in page.text("in-message"), "the relabel confirmation")

    # show the uncertainty layer, then photograph the instance
    for label in driver.find_elements(By.CSS_SELECTOR, "#in-layers label"):
        if "uncertainty" in label.text:
            label.click()
    wait_for(lambda: driver.find_element(By.CSS_SELECTOR, "#in-image img").get_attribute("src"), "the picture")
    time.sleep(1.5)
    page.shot("instance")
    mark("instance")

    # confusion: a click on a most-confused pair, and on a heatmap cell, lists pseudo-labels
    page.tab("Confusion")
    wait_for(lambda: page.plot("cf-heatmap", "gd.data.length"), "the confusion heatmap")
    page.cell("cf-pairs", 0, 0).click()
    wait_for(lambda: re.search(r"\d+\*?\*? of \d+ queries|no pseudo-label to open", page.text("cf-note")),
             "the pseudo-labels of a confused pair")
    xy = driver.execute_script(
        "const gd = document.querySelector('#cf-heatmap [data-testid=plotly]');"
        "const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();"
        "return [xa._offset + xa.l2p(0) - r.width / 2, ya._offset + ya.l2p(0) - r.height / 2];")
    heatmap = driver.find_element(By.CSS_SELECTOR, "#cf-heatmap [data-testid=plotly]")
    note_before = page.text("cf-note")
    ActionChains(driver).move_to_element_with_offset(heatmap, int(xy[0]), int(xy[1])).click().perform()
    wait_for(lambda: page.text("cf-note") != note_before, "the pseudo-labels of the clicked cell")
    page.shot("confusion")
    mark("confusion")

    page.tab("Errors")
    wait_for(lambda: page.plot("er-trend", "gd.data.length"), "the error trend")
    wait_for(lambda: page.plot("er-counts", "gd.data.length"), "the error counts")
    page.shot("errors")
    mark("errors")

    page.tab("Compare")
    wait_for(lambda: page.plot("cmp-metrics", "gd.data.length"), "the comparison")
    wait_for(lambda: driver.find_element(By.CSS_SELECTOR, "#cmp-pic-a img").get_attribute("src"), "image A")
    assert "A: demo @ 1000" in page.plot("cmp-metrics", "gd.data.map(t => t.name).join(' ')")
    assert page.plot("cmp-conf-a", "true") is None  # drawn when their accordion opens
    page.click("#cmp-conf-box button, #cmp-conf-box .label-wrap")
    wait_for(lambda: page.plot("cmp-conf-a", "gd.data.length") and page.plot("cmp-conf-b", "gd.data.length"),
             "the confusion matrices, drawn when opened")
    page.shot("compare")
    mark("compare")

    # an invalid setting is refused in the form, with the config's message
    page.tab("Train")
    wait_for(lambda: page.plot("tr-loss", "gd.data.length"), "the run's loss curve")
    page.type_into("tr-name", "refused-run")
    page.type_into("tr-ct", "1.5")
    page.click("#tr-start")
    wait_for(lambda: "Not started: pldc.c_t: must be in [0, 1]" in page.text("tr-message"), "the refusal")
    assert "Traceback" not in page.text("tr-message")
    assert not (runs_root / "refused-run").exists()
    page.shot("train")
    mark("train")

    # curate: the two decisions are there; export them and check the file
    page.tab("Curate")
    wait_for(lambda: "1** accepted" in driver.find_element(By.ID, "cu-summary").get_attribute("innerHTML")
             or "<strong>1</strong> accepted" in driver.find_element(By.ID, "cu-summary").get_attribute("innerHTML"),
             "the decisions summary")
    page.type_into("cu-file", "curated_test.json")
    page.click("#cu-export")
    wait_for(lambda: "Wrote" in page.text("cu-export-message"), "the export message")
    page.shot("curate")
    mark("curate")
    exported = json.loads((runs_root / "demo" / "curation" / "curated_test.json").read_text())
    cats = categories(8)
    by_key = {(a["image_id"], a["pldc_source"]["query"]): a for a in exported["annotations"]}
    assert set(by_key) == {accepted, relabelled}
    assert all(a["pldc_source"]["iteration"] == 1000 for a in exported["annotations"])
    assert by_key[relabelled]["category_id"] == next(c["id"] for c in cats if c["name"] == new_class)
    assert {img["id"] for img in exported["images"]} == {accepted[0], relabelled[0]}
    assert exported["categories"] == cats
    for annotation in exported["annotations"]:
        assert annotation["segmentation"]["size"] == [64, 80] and annotation["area"] > 0
    edits = [json.loads(line) for line in (runs_root / "demo" / "curation" / "edits.jsonl").read_text().splitlines()]
    assert [e["action"] for e in edits] == ["accept", "relabel"] and all(e["source"] == "gradio" for e in edits)
    mark("export checked")

    # the DICC tab at the earlier checkpoint (DICC changed classes there): a checkpoint switch, then a correction
    page.tab("DICC")
    wait_for(lambda: "DICC ran on" in page.text("dc-summary"), "the DICC summary")
    # each new figure is drawn once, into the plot that stays (Gradio re-creates a plot for each figure)
    driver.execute_script("""
      const P = window.Plotly, draw = P.__pldcReactNow;
      window.__draws = {};
      P.__pldcReactNow = function (gd, ...rest) {
        const id = gd.closest('[id]').id;
        window.__draws[id] = (window.__draws[id] || 0) + 1;
        return draw.call(P, gd, ...rest);
      };""")
    page.choose("ckpt-dd", "500")
    wait_for(lambda: page.cell("dc-table", 0, 0).text, "a DICC correction at iteration 500")
    wait_for(lambda: "<strong>500</strong>" in driver.find_element(By.ID, "ckpt-summary").get_attribute("innerHTML"),
             "the sidebar's summary of iteration 500")
    time.sleep(1.0)
    draws = driver.execute_script("return window.__draws")
    assert draws.get("dc-per-class") == 1 and set(draws.values()) == {1}, draws
    page.cell("dc-table", 0, 0).click()
    wait_for(lambda: "DICC" in page.text("dc-note") and page.cell("dc-list", 0, 0).text, "the corrected pseudo-labels")
    page.shot("dicc")
    mark("dicc")


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_serves_files_from_the_runs_folder_only(server):
    url, runs_root, root = server
    image = runs_root / "demo" / "images" / "000001.png"
    assert _status(f"{url}gradio_api/file={image}") == 200
    for outside in (root / "app.log", ROOT / "pyproject.toml", Path("/etc/passwd"),
                    runs_root / ".." / "app.log"):
        assert _status(f"{url}gradio_api/file={outside}") in (403, 404), outside

