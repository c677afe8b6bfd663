"""Benchmark of the workbench as a user feels it: from an action in headless Chromium to the updated
figures on screen.

    python benchmarks/bench_app_browser.py --run RUN_DIR [--data-root data] [--repeats 5]
        [--fabricated-rows 100000] [--note TEXT] [--out benchmarks/results/app_browser.txt]

RUN_DIR (a real run with records of at least two checkpoints) is copied without its weights into a
temporary runs folder; with --fabricated-rows N (0: none) a run of five checkpoints of N fabricated query
records each (``fabricate_large_checkpoint``, the scale of bench_app.py: 80 classes) is measured too.
`pldc app` runs in a process of its own on 127.0.0.1, as a user starts it, and each run gets a fresh
headless Chromium.

A script put in the page before Gradio's (``BENCH_JS``) takes the time of the action from the first
pointerdown / mousedown / keydown event after it is armed, then watches the DOM (a MutationObserver and a
5 ms poll) until every target of the action is done: a plot whose graph div has a new ``data`` array (the
server's figure went through ``Plotly.react``) or moved marks (title, shapes, annotations: an update
applied with ``Plotly.relayout``), is shown and fits its box; a text that changed. The time on screen
is taken two animation frames later (the frame painted). It also counts the queue requests the action
sent, when the first one left, and the time spent inside ``Plotly.react`` / ``relayout``, which tells
the server + transfer part from the drawing part; ``--trace`` prints each action's timeline.

Actions: the first open of every tab after a page load (the app started without --run opens on Train,
which is measured reopened, last) and of Compare's confusion matrices (an accordion, drawn when opened), a
c_t slider step by keyboard, a checkpoint switch in the sidebar (to checkpoints not read yet, then back and
forth between two cached ones). Targets: a tab or view < 1.5 s, a slider step < 0.5 s, a checkpoint switch
< 1 s; the verdict is on the median.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project's packages when run as a script
sys.path.insert(0, str(ROOT / "benchmarks"))

from apps.gradio_app.browser import (BrowserError, Page, chromium, copy_run, missing_browser,  # noqa: E402
                                     running_app, set_viewport, wait_for)
from pldc_core.records.store import list_record_iterations  # noqa: E402
from report_text import emit, machine_line  # noqa: E402

TAB_TARGET_S, SLIDER_TARGET_S, SWITCH_TARGET_S = 1.5, 0.5, 1.0
WINDOW = (1500, 1100)
ACTION_TIMEOUT_S = 60

BENCH_JS = r"""
(() => {
  const B = window.__bench = {armed: null};
  const now = () => performance.now();
  const shown = (e) => !!e && e.offsetParent !== null && e.getBoundingClientRect().width > 0;
  B.probe = (t) => {
    const host = document.getElementById(t.id);
    if (!host) return {ref: null, key: '', ok: false};
    if (t.kind === 'plot') {
      const gd = host.querySelector('[data-testid=plotly]');
      const svg = gd && gd.querySelector('.main-svg');
      const fits = svg && (gd.layout.width ||
                           Math.abs(svg.getBoundingClientRect().width - gd.getBoundingClientRect().width) < 3);
      const marks = gd && gd.layout ? JSON.stringify([gd.layout.title, gd.layout.shapes, gd.layout.annotations]) : '';
      return {ref: gd ? gd.data : null, key: marks, ok: !!(svg && gd._fullLayout && shown(gd) && fits)};
    }
    return {ref: host.innerText, key: '', ok: shown(host) && host.innerText.trim().length > 0};
  };
  B.arm = (targets) => {
    B.armed = {t0: null, done: null, painted: null, requests: 0, firstRequest: null, reacts: 0, reactMs: 0, log: [],
               targets: targets.map((t) => ({...t, before: B.probe(t), at: null}))};
  };
  const check = () => {
    const a = B.armed;
    if (!a || a.t0 === null || a.done !== null) return;
    const t = now();
    for (const x of a.targets) {
      if (x.at !== null) continue;
      const p = B.probe(x);
      const changed = p.ref !== x.before.ref || p.key !== x.before.key;  // redrawn, or its marks moved
      if (p.ok && (x.mode === 'shown' || changed)) { x.at = t; log(a, `done ${x.id}`); }
    }
    if (a.targets.every((x) => x.at !== null)) {
      a.done = t;
      requestAnimationFrame(() => requestAnimationFrame(() => { a.painted = now(); }));
    }
  };
  for (const type of ['pointerdown', 'mousedown', 'keydown']) {
    window.addEventListener(type, () => {
      if (B.armed && B.armed.t0 === null) { B.armed.t0 = now(); check(); }
    }, true);
  }
  const active = () => B.armed && B.armed.t0 !== null && B.armed.done === null ? B.armed : null;
  const log = (a, what) => a.log.push([Math.round(now() - a.t0), what]);
  const fetch0 = window.fetch;
  window.fetch = function (input, init) {
    const a = active();
    const url = typeof input === 'string' ? input : (input && input.url) || '';
    if (a && url.includes('/queue/join')) {
      let fn = '?';
      try { fn = JSON.parse(init.body).fn_index; } catch (e) {}
      const deps = (window.gradio_config || {}).dependencies || [];
      const dep = deps.find((d) => d.id === fn);
      if (dep && dep.targets.some((t) => t[1] === 'tick')) {
        log(a, `request fn ${fn} (the sidebar's timer, not counted)`);
      } else {
        a.requests += 1;
        if (a.firstRequest === null) a.firstRequest = now();
        log(a, `request fn ${fn} (${((init && init.body && init.body.length) || 0) / 1000} kB)`);
      }
    }
    return fetch0.apply(this, arguments);
  };
  window.addEventListener('resize', () => { const a = active(); if (a) log(a, 'window resize event'); });
  const read0 = ReadableStreamDefaultReader.prototype.read;  // the queue's answers arrive on an event stream
  const decoder = new TextDecoder();
  ReadableStreamDefaultReader.prototype.read = function () {
    return read0.apply(this, arguments).then((chunk) => {
      const a = active();
      if (a && chunk && chunk.value && chunk.value.byteLength) {
        const head = decoder.decode(chunk.value.subarray(0, 300));
        const m = head.match(/"msg": ?"(\w+)"/);
        log(a, `received ${m ? m[1] : 'chunk'} ${(chunk.value.byteLength / 1000).toFixed(1)} kB`);
      }
      return chunk;
    });
  };
  setInterval(() => {  // time spent drawing: Plotly.react's and relayout's synchronous part, once plotly is loaded
    const P = window.Plotly;
    // the app's page script draws each figure once, later (demo.PAGE_JS): time its drawing call
    if (!P || !P.__pldcReactNow || P.__benchWrapped) return;
    P.__benchWrapped = true;
    for (const name of ['__pldcReactNow', 'relayout']) {
      const draw = P[name];
      P[name] = function () {
        const a = active(), start = now();
        const out = draw.apply(this, arguments);
        if (a) {
          a.reacts += 1;
          a.reactMs += now() - start;
          const host = arguments[0] && arguments[0].closest && arguments[0].closest('[id]');
          log(a, `Plotly.${name === '__pldcReactNow' ? 'react' : name} ${host ? host.id : '?'} ${Math.round(now() - start)} ms`);
        }
        return out;
      };
    }
  }, 20);
  new MutationObserver(check).observe(document, {subtree: true, childList: true, attributes: true,
                                                 characterData: true});
  setInterval(check, 5);
})();
"""

RESULT_JS = """
const a = window.__bench.armed;
if (!a || a.painted === null) return null;
return {total: a.painted - a.t0, dom: a.done - a.t0, requests: a.requests, reacts: a.reacts, react_ms: a.reactMs,
        first_request: a.firstRequest === null ? null : a.firstRequest - a.t0,
        targets: Object.fromEntries(a.targets.map((x) => [x.id, x.at - a.t0])), log: a.log};
"""


def plot(elem_id: str, mode: str = "changed") -> dict:
    return {"id": elem_id, "kind": "plot", "mode": mode}


def text(elem_id: str, mode: str = "changed") -> dict:
    return {"id": elem_id, "kind": "text", "mode": mode}


# What each tab's first open must bring on screen. Train and Instance send nothing when opened (their plots
# are drawn with the run, while hidden): shown and fitted to their box is enough; the other tabs are refreshed
# by the server when opened, and were empty before.
TAB_TARGETS = {
    "Train": [plot("tr-loss", "shown"), plot("tr-counts", "shown"), plot("tr-ap", "shown")],
    "Instance": [text("in-where", "shown"), plot("in-classes", "shown")],
    "Confusion": [plot("cf-heatmap"), text("cf-pairs")],
    "Errors": [plot("er-trend"), plot("er-counts")],
    "DICC": [plot("dc-per-class"), plot("dc-trend"), plot("dc-clip")],
    "Compare": [plot("cmp-metrics"), plot("cmp-scatter-a"), plot("cmp-scatter-b"), plot("cmp-errors")],
    "Curate": [plot("cu-plot")],
    "Pseudo-labels": [plot("pl-scatter"), plot("pl-whatif")],
}
PL_FIGURES = [plot("pl-scatter"), plot("pl-whatif")]
COMPARE_CONFUSIONS = [plot("cmp-conf-a"), plot("cmp-conf-b")]
COMPARE_CONFUSIONS_BUTTON = "#cmp-conf-box button, #cmp-conf-box .label-wrap"


def measure(page: Page, targets: list[dict], act) -> dict:
    """Arm the page's watcher on ``targets``, do ``act()``, return the times (ms from the action)."""
    page.d.execute_script("window.__bench.arm(arguments[0])", targets)
    act()
    end = time.time() + ACTION_TIMEOUT_S
    while time.time() < end:
        result = page.d.execute_script(RESULT_JS)
        if result:
            return result
        time.sleep(0.05)
    state = page.d.execute_script(
        "const a = window.__bench.armed; return a && {action_seen: a.t0 !== null, requests: a.requests, "
        "waiting_for: a.targets.filter((x) => x.at === null).map((x) => x.id + (window.__bench.probe(x).ok ? "
        "' (unchanged)' : ' (not drawn)'))};")
    raise BrowserError(f"no update on screen {ACTION_TIMEOUT_S} s after the action: {state}")


def quiet(page: Page, seconds: float = 0.6) -> None:
    """Let the events an action set off finish before the next one."""
    wait_for(lambda: not page.d.execute_script("return document.querySelector('.pending, .generating')"),
             "the page to settle")
    time.sleep(seconds)


def load(page: Page, url: str) -> float:
    """A fresh page; seconds from navigation to the Train tab's figures drawn and the run's latest
    checkpoint chosen (the app opens on the Train tab with the latest run that has records)."""
    start = time.perf_counter()
    page.d.get(url)
    wait_for(lambda: page.plot("tr-loss", "gd._fullLayout && true") and page.plot("tr-ap", "gd._fullLayout && true")
             and "iteration" in page.text("ckpt-summary"), "the Train tab and the checkpoint after the page load")
    seconds = time.perf_counter() - start
    quiet(page, 1.0)
    return seconds


def slider_step(page: Page, key: str):
    from selenium.webdriver.common.by import By

    def act():
        slider = page.d.find_element(By.CSS_SELECTOR, "#pl-ct input[type=range]")
        page.d.execute_script("arguments[0].focus()", slider)
        slider.send_keys(key)
    return act


def switch_to(page: Page, iteration: int):
    """The checkpoint dropdown opened beforehand (not timed); the action is the click on the option."""
    from selenium.webdriver.common.by import By

    page.click("#ckpt-dd input")
    option = wait_for(lambda: [o for o in page.d.find_elements(By.CSS_SELECTOR, "ul[role=listbox] li")
                               if o.text.strip().split("\n")[-1] == str(iteration)], f"checkpoint {iteration}")[0]
    return option.click


class Results:
    """Times per action (seconds) and the breakdown of each measurement."""

    def __init__(self, trace: bool = False):
        self.rows: dict[str, dict] = {}
        self.trace = trace

    def add(self, name: str, target: float | None, result: dict) -> None:
        row = self.rows.setdefault(name, {"target": target, "runs": []})
        row["runs"].append(result)
        if self.trace:
            print(f"{name}: {result['total']:.0f} ms")
            for at, what in result.get("log", []):
                print(f"  {at:6d} ms  {what}")

    def lines(self) -> list[str]:
        out = [f"{'action':<66} {'best s':>7} {'median':>7} {'max s':>7}  {'target':>6}  {'verdict':<7} "
               f"{'n':>2} {'req':>3} {'1st req ms':>10} {'plotly ms':>9}"]
        for name, row in self.rows.items():
            runs = row["runs"]
            times = [r["total"] / 1000 for r in runs]
            med = statistics.median(times)
            target = row["target"]
            verdict = "-" if target is None else ("ok" if med < target else "MISSED")
            first = [r["first_request"] for r in runs if r.get("first_request") is not None]
            out.append(f"{name:<66} {min(times):>7.3f} {med:>7.3f} {max(times):>7.3f}  "
                       f"{'-' if target is None else f'< {target:g}':>6}  {verdict:<7} {len(times):>2} "
                       f"{statistics.median(r.get('requests', 0) for r in runs):>3.0f} "
                       f"{statistics.median(first) if first else float('nan'):>10.0f} "
                       f"{statistics.median(r.get('react_ms', 0) for r in runs):>9.0f}")
        return out


def bench_run(url: str, page: Page, iterations: list[int], repeats: int, label: str, res: Results) -> None:
    """Every action on the run the app shows (the only one in its runs folder), from its latest checkpoint."""
    from selenium.webdriver.common.keys import Keys

    for k in range(repeats):
        seconds = load(page, url)
        res.add(f"{label}: page load -> Train tab drawn (reference)", None,
                {"total": seconds * 1000, "requests": 0, "react_ms": 0})
        for tab in ("Pseudo-labels", "Instance", "Confusion", "Errors", "DICC", "Compare", "Curate", "Train"):
            name = f"{label}: first open, {tab}" if tab != "Train" else f"{label}: Train reopened"
            res.add(name, TAB_TARGET_S, measure(page, TAB_TARGETS[tab], page.tab_button(tab).click))
            quiet(page)
            if tab == "Compare":  # its confusion matrices are drawn when their accordion is opened
                res.add(f"{label}: Compare, confusion matrices opened", TAB_TARGET_S,
                        measure(page, COMPARE_CONFUSIONS, lambda: page.click(COMPARE_CONFUSIONS_BUTTON)))
                quiet(page)
    # on the Pseudo-labels tab: slider steps (c_t one step up, then back down ...), then checkpoint switches
    page.tab("Pseudo-labels")
    quiet(page)
    for k in range(repeats):
        res.add(f"{label}: slider step -> what-if and scatter", SLIDER_TARGET_S,
                measure(page, PL_FIGURES, slider_step(page, Keys.ARROW_RIGHT if k % 2 == 0 else Keys.ARROW_LEFT)))
        quiet(page)
    # the latest two checkpoints are in the app's cache (Compare showed them); the others were never read
    latest, previous, unread = iterations[-1], iterations[-2], iterations[:-2]
    switched = PL_FIGURES
    for it in reversed(unread[-repeats:]):
        res.add(f"{label}: checkpoint switch, records not read yet", SWITCH_TARGET_S,
                measure(page, switched, switch_to(page, it)))
        quiet(page)
    for it in (previous, latest):  # back in the cache (it keeps 4 checkpoints), not timed
        switch_to(page, it)()
        quiet(page)
    for k in range(repeats):
        res.add(f"{label}: checkpoint switch, cached", SWITCH_TARGET_S,
                measure(page, switched, switch_to(page, previous if k % 2 == 0 else latest)))
        quiet(page)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="a real run folder (copied, not changed)")
    parser.add_argument("--data-root", default="data", type=Path, help="the datasets folder (default: data)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fabricated-rows", type=int, default=100_000,
                        help="query records per checkpoint of a fabricated run measured too (0: none)")
    parser.add_argument("--trace", action="store_true",
                        help="print each action's timeline (requests, answers, Plotly.react, targets done)")
    parser.add_argument("--note", default="", help="a note appended to the result (e.g. what else ran)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "app_browser.txt"))
    args = parser.parse_args(argv)
    run = args.run.resolve()
    iterations = list_record_iterations(run) if run.is_dir() else []
    problem = (f"{run}: no such run folder" if not run.is_dir() else
               f"{run}/records: records of {len(iterations)} checkpoint(s); the checkpoint switch needs two"
               if len(iterations) < 2 else
               f"{args.data_root}: no such data folder (give --data-root)" if not args.data_root.is_dir() else
               missing_browser())
    if problem:
        print(f"bench_app_browser: {problem}", file=sys.stderr)
        return 1
    from selenium.common.exceptions import WebDriverException

    load_start = os.getloadavg()
    started = time.perf_counter()
    res = Results(args.trace)
    with tempfile.TemporaryDirectory(prefix="pldc-bench-browser-") as tmp:
        tmp = Path(tmp)
        runs = [(copy_run(run, tmp / "runs-real").name, tmp / "runs-real", iterations,
                 f"{run.name} ({len(iterations)} ckpts)")]
        if args.fabricated_rows:
            from pldc_core.records.fabricated_run import fabricate_large_checkpoint

            fab = [2000, 4000, 6000, 8000, 10000]  # two cached by Compare, three to read on a switch
            for k, it in enumerate(fab):
                fabricate_large_checkpoint(tmp / "runs-fab" / "fabricated", it, args.fabricated_rows, seed=k)
            runs.append(("fabricated", tmp / "runs-fab", fab, f"fabricated ({args.fabricated_rows:,} rows)"))
        try:
            for name, runs_root, its, label in runs:  # a browser of its own for each run: nothing left running
                # no --run: the page opens on Train with the only run there; every other tab is still empty
                with running_app(runs_root, args.data_root.resolve(), tmp / f"app-{name}.log") as url, \
                        chromium(tmp / f"chromium-profile-{name}", WINDOW) as driver:
                    set_viewport(driver, *WINDOW)
                    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": BENCH_JS})
                    bench_run(url, Page(driver, tmp), its, args.repeats, label, res)
                    print("\n".join(res.lines()), flush=True)
        except (BrowserError, WebDriverException) as exc:
            print(f"bench_app_browser: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 1
    load_end = os.getloadavg()
    lines = [f"# bench_app_browser: action -> updated figures on screen, headless Chromium {WINDOW[0]}x{WINDOW[1]}",
             f"# {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
             f"# {machine_line(time.perf_counter() - started)}",
             f"# load average (1, 5, 15 min) at the start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f},"
             f" at the end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}",
             f"# {args.repeats} repeats per action; verdict on the median. n: measurements; req: queue requests the "
             "action sent (the sidebar's 2 s timer not counted); 1st req ms: when the first left;",
             "# plotly ms: time inside Plotly.react and relayout (drawing)",
             *res.lines()]
    if args.note:
        lines += ["", f"# Note: {args.note}"]
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
