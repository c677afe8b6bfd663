"""The README's pictures of the workbench, taken in headless Chromium on a real run.

    python scripts/screenshots.py --run RUN_DIR [--data-root data] [--out docs/images] [--size 1500x1100]

Copies RUN_DIR (without its checkpoint weights, which the app never reads) into a temporary runs
folder, starts `pldc app` on it (127.0.0.1, a free port), walks through every tab at a fixed
window size and saves OUT/app_<tab>.png: train, pseudo_labels, instance (one pseudo-label opened
from the listing, its uncertainty shown), confusion, errors, dicc, compare, curate. The curation
decisions in the pictures (correct pseudo-labels accepted, a background one rejected) are made by
this script in the copy; RUN_DIR is left as it was. The app is stopped at the end.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project's packages when run as a script

from apps.gradio_app.browser import (BrowserError, Page, chromium, copy_run, missing_browser,  # noqa: E402
                                     running_app, set_viewport, wait_for)
from pldc_core.records.store import list_record_iterations  # noqa: E402
from workbench.explain import error_label  # noqa: E402

DICC_COLUMNS = ["pred_class", "corrected_class", "gt_class", "iou"]  # what dicc_report reads
TABS = ("train", "pseudo_labels", "instance", "confusion", "errors", "dicc", "compare", "curate")


def check_run(run: Path) -> str | None:
    """Why ``run`` cannot be photographed (one line naming the folder), or None."""
    if not run.is_dir():
        return f"{run}: no such run folder"
    if not (run / "config.yaml").is_file():
        return f"{run}: not a run folder (no config.yaml)"
    if len(list_record_iterations(run)) < 2:
        return (f"{run}/records: pseudo-label records of {len(list_record_iterations(run))} checkpoint(s); the "
                "pictures need two (train with records.enabled, or run `pldc pseudo-labels` on two checkpoints)")
    return None


def settle(page: Page, seconds: float = 1.5) -> None:
    """Wait until Gradio has no request pending, then a little for plotly's transitions."""
    wait_for(lambda: not page.d.execute_script("return document.querySelector('.pending, .generating')"),
             "the page to settle")
    time.sleep(seconds)


def open_first(page: Page, error_type: str) -> bool:
    """Open the first pseudo-label kept by the run of ``error_type`` from the Pseudo-labels listing;
    False when there is none."""
    page.tab("Pseudo-labels")
    page.choose("pl-status", "kept by the run")
    page.choose("pl-error", error_label(error_type))
    wait_for(lambda: f"error {error_type}, kept by the run" in page.text("pl-info"),
             f"the listing of the run's {error_type} pseudo-labels")
    if page.text("pl-info").startswith("0 "):
        return False
    page.cell("pl-table", 0, 2).click()
    wait_for(lambda: "1 of" in page.text("in-where"), f"a {error_type} pseudo-label opened")
    return True


def decide(page: Page, button: str, done: str) -> None:
    page.click(f"#{button}")
    wait_for(lambda: done in page.text("in-message"), f"the {done} confirmation")


def most_dicc_changes(run: Path) -> int | None:
    """The recorded iteration where DICC changed the most classes (the latest of equals), or None
    where it changed none."""
    from pldc_core.records.store import load_records
    from workbench.dicc_report import dicc_report

    counts = {it: dicc_report(load_records(run, iteration=it, columns=DICC_COLUMNS).queries).summary["n_changed"]
              for it in list_record_iterations(run)}
    best = max(counts, key=lambda it: (counts[it], it))
    return best if counts[best] else None


def walk(page: Page, dicc_at: int | None = None) -> list[Path]:
    """Every tab photographed, in TABS order; returns the files written. The DICC tab is shown at
    checkpoint ``dicc_at`` (where DICC changed the most classes), the others at the latest."""
    from selenium.webdriver.common.by import By

    d, shots = page.d, {}
    # --run opens the Pseudo-labels tab at the latest checkpoint
    wait_for(lambda: page.plot("pl-scatter", "gd.querySelectorAll('.point').length"), "the scatter's points")
    wait_for(lambda: page.plot("pl-whatif", "gd.data.length"), "the what-if")
    settle(page)
    shots["pseudo_labels"] = page.shot("pseudo_labels")

    page.tab("Train")
    wait_for(lambda: page.plot("tr-loss", "gd.data.length") and page.plot("tr-ap", "gd.data.length"),
             "the training curves")
    settle(page)
    shots["train"] = page.shot("train")

    # one correct pseudo-label opened (accepted), with its uncertainty; another accepted, a background one rejected
    if not open_first(page, "Cor"):
        raise BrowserError("the run kept no correct pseudo-label to open in the Instance tab")
    decide(page, "in-accept", "accepted (saved)")
    for label in d.find_elements(By.CSS_SELECTOR, "#in-layers label"):
        if "uncertainty" in label.text:
            label.click()
    wait_for(lambda: d.find_element(By.CSS_SELECTOR, "#in-image img").get_attribute("src"), "the picture")
    settle(page)
    shots["instance"] = page.shot("instance")
    page.click("#in-next")
    wait_for(lambda: "2 of" in page.text("in-where"), "the next pseudo-label")
    decide(page, "in-accept", "accepted (saved)")
    if open_first(page, "BG"):
        decide(page, "in-reject", "rejected (saved)")

    page.tab("Confusion")
    wait_for(lambda: page.plot("cf-heatmap", "gd.data.length"), "the confusion matrix")
    settle(page, 0.5)
    # the most confused pair with a pseudo-label (not a missed GT): its pseudo-labels listed below
    rows = d.find_elements(By.CSS_SELECTOR, "#cf-pairs [data-testid^=cell-][data-testid$='-0']")
    pair = next((r for r in rows if r.text.strip() not in ("", "background")), None)
    if pair is not None:
        note = page.text("cf-note")
        pair.click()
        wait_for(lambda: page.text("cf-note") != note, "the pseudo-labels of a confused pair")
    settle(page)
    shots["confusion"] = page.shot("confusion")

    page.tab("Errors")
    wait_for(lambda: page.plot("er-trend", "gd.data.length") and page.plot("er-counts", "gd.data.length"),
             "the error figures")
    settle(page)
    shots["errors"] = page.shot("errors")

    page.tab("DICC")
    wait_for(lambda: page.text("dc-summary") and page.plot("dc-trend", "gd.data.length"), "the DICC summary")
    latest = d.find_element(By.CSS_SELECTOR, "#ckpt-dd input").get_attribute("value")
    elsewhere = dicc_at is not None and str(dicc_at) != latest
    if elsewhere:
        page.choose("ckpt-dd", str(dicc_at))
        wait_for(lambda: f"<strong>{dicc_at}</strong>" in d.find_element(By.ID, "ckpt-summary").get_attribute(
            "innerHTML") and page.cell("dc-table", 0, 0).text, f"DICC's corrections at iteration {dicc_at}")
    settle(page)
    shots["dicc"] = page.shot("dicc")
    if elsewhere:
        page.choose("ckpt-dd", latest)
        settle(page)

    page.tab("Compare")
    wait_for(lambda: page.plot("cmp-metrics", "gd.data.length"), "the comparison")
    wait_for(lambda: d.find_element(By.CSS_SELECTOR, "#cmp-pic-b img").get_attribute("src"), "image B")
    settle(page)
    shots["compare"] = page.shot("compare")

    page.tab("Curate")
    wait_for(lambda: "accepted" in page.text("cu-summary") and page.cell("cu-table", 0, 0).text, "the decisions")
    settle(page)
    shots["curate"] = page.shot("curate")
    return [shots[name] for name in TABS]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="the run folder to photograph (not changed)")
    parser.add_argument("--data-root", default="data", type=Path, help="the datasets folder (default: data)")
    parser.add_argument("--out", default=ROOT / "docs" / "images", type=Path,
                        help="folder of the pictures (default: docs/images)")
    parser.add_argument("--size", default="1500x1100", help="window size WIDTHxHEIGHT (default: 1500x1100)")
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"screenshots: --size {args.size}: expected WIDTHxHEIGHT, e.g. 1500x1100", file=sys.stderr)
        return 2
    run = args.run.resolve()
    problem = check_run(run) or missing_browser()
    if problem is None and not args.data_root.is_dir():
        problem = f"{args.data_root}: no such data folder (give --data-root)"
    if problem:
        print(f"screenshots: {problem}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="pldc-screenshots-") as tmp:
        tmp = Path(tmp)
        # The copy lives in the repository's (ignored) runs folder so that the app, which shows its
        # folders relative to where it runs, shows "runs/screenshots" rather than a temporary path.
        shots = ROOT / "runs" / "screenshots"
        shutil.rmtree(shots, ignore_errors=True)
        copy = copy_run(run, shots)
        try:
            with running_app(shots, args.data_root.resolve(), tmp / "app.log", run=copy.name) as url, \
                    chromium(tmp / "chromium-profile", (width, height)) as driver:
                set_viewport(driver, width, height)
                driver.get(url)
                files = walk(Page(driver, args.out), most_dicc_changes(run))
        except BrowserError as exc:
            print(f"screenshots: {exc}", file=sys.stderr)
            return 1
        finally:
            shutil.rmtree(shots, ignore_errors=True)
    for path in files:
        print(path)
    print(f"{len(files)} pictures of {run.name} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
