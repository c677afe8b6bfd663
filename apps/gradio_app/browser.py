"""The workbench in a real browser, for the browser tests, `scripts/screenshots.py` and
`benchmarks/bench_app_browser.py`: `pldc app` started in a process of its own on a free port of
127.0.0.1, headless Chromium driven by selenium (a test dependency), and small helpers over the
Gradio page (waiting, tabs, tables, plotly figures). Problems raise ``BrowserError``.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Debian's chromium and chromium-driver; PLDC_CHROMIUM / PLDC_CHROMEDRIVER point elsewhere
CHROMIUM = os.environ.get("PLDC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("PLDC_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
WINDOW = (1500, 1250)
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars"]
STEP_TIMEOUT = 60


class BrowserError(RuntimeError):
    """The app did not start, Chromium is missing, or the page never reached an awaited state."""


def missing_browser() -> str | None:
    """Why Chromium cannot be driven here (one line), or None when it can."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        return (f"needs the Debian chromium and chromium-driver packages: {', '.join(missing)} not found "
                "(or set PLDC_CHROMIUM / PLDC_CHROMEDRIVER)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium (pip install 'selenium>=4,<5', part of the test extra)"
    return None


def copy_run(run: Path, runs_root: Path) -> Path:
    """``run`` copied into ``runs_root`` without its checkpoint weights (``*.pt``, which the app never reads):
    a copy to click through, accept and reject in without touching the run."""
    target = Path(runs_root) / Path(run).name
    shutil.copytree(run, target, ignore=lambda folder, names: [n for n in names if n.endswith(".pt")])
    return target


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(runs_root: Path, data_root: Path, log_path: Path, run: str | None = None,
                start_timeout: float = 180):
    """`pldc app` on ``runs_root``, bound to 127.0.0.1 on a free port, in a process of its own; yields its
    URL once it answers and stops it on exit (a traceback in its log is printed)."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PLDC_NO_PROGRESS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "apps.cli", "app", "--runs-dir", str(runs_root), "--data-root", str(data_root),
               "--host", "127.0.0.1", "--port", str(port)] + (["--run", run] if run else [])
    log = open(log_path, "wb")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + start_timeout
    try:
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise BrowserError(f"the app did not start (log {log_path}): {log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        text = log_path.read_text(errors="replace")
        if "Traceback" in text:
            print(f"the app logged errors:\n{text[-6000:]}")


@contextmanager
def chromium(profile_dir: Path, window: tuple[int, int] = WINDOW):
    """Headless Chromium driven by selenium, its window ``window`` (width, height) pixels."""
    why = missing_browser()
    if why:
        raise BrowserError(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS + [f"--window-size={window[0]},{window[1]}", f"--user-data-dir={profile_dir}"]:
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_script_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def set_viewport(driver, width: int, height: int) -> None:
    """The page's viewport exactly ``width`` x ``height`` CSS pixels (the window's size less nothing)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def wait_for(condition, what: str, timeout: float = STEP_TIMEOUT):
    """Poll ``condition`` until it returns something truthy; BrowserError naming ``what`` if it never does."""
    end = time.time() + timeout
    last_error = None
    while time.time() < end:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # the page is re-rendering: elements come and go
            last_error = exc
        time.sleep(0.2)
    raise BrowserError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error!r})")


class Page:
    """Small helpers over the Gradio page; ``shot`` saves screenshots into ``shots``."""

    def __init__(self, driver, shots: Path):
        self.d, self.shots = driver, shots

    def text(self, elem_id: str) -> str:
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.ID, elem_id).text

    def plot(self, elem_id: str, expr: str):
        """Evaluate ``expr`` on the plotly graph div of a gr.Plot (``gd``)."""
        return self.d.execute_script(
            f"const gd = document.querySelector('#{elem_id} [data-testid=plotly]');"
            f"return gd && gd.layout ? ({expr}) : null;")

    def tab_button(self, name: str):
        """The button of tab ``name`` (None while it is not on the page)."""
        from selenium.webdriver.common.by import By

        return next((b for b in self.d.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text.strip() == name),
                    None)

    def tab(self, name: str) -> None:
        from selenium.webdriver.common.by import By

        def click():
            button = self.tab_button(name)
            if button is not None:
                button.click()
            return button is not None
        wait_for(click, f"the {name} tab button")
        wait_for(lambda: any(b.get_attribute("aria-selected") == "true" and b.text.strip() == name
                             for b in self.d.find_elements(By.CSS_SELECTOR, "button[role=tab]")),
                 f"the {name} tab to be shown")

    def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By

        wait_for(lambda: self.d.find_element(By.CSS_SELECTOR, css).is_displayed(), css)
        self.d.find_element(By.CSS_SELECTOR, css).click()

    def cell(self, table_id: str, row: int, col: int):
        from selenium.webdriver.common.by import By

        return wait_for(lambda: self.d.find_element(By.CSS_SELECTOR, f"#{table_id} [data-testid=cell-{row}-{col}]"),
                        f"row {row} of {table_id}")

    def type_into(self, elem_id: str, text: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        box = self.d.find_element(By.CSS_SELECTOR, f"#{elem_id} input, #{elem_id} textarea")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(text)
        box.send_keys(Keys.TAB)

    def choose(self, elem_id: str, option: str) -> None:
        """Pick ``option`` in a gr.Dropdown."""
        from selenium.webdriver.common.by import By

        def listed():
            options = self.d.find_elements(By.CSS_SELECTOR, "ul[role=listbox] li")
            if not options:  # not open (yet, or a re-render closed it): click again
                self.click(f"#{elem_id} input")
            return [o for o in options if o.text.strip().split("\n")[-1] == option]
        wait_for(listed, f"option {option} of {elem_id}")[0].click()

    def shot(self, name: str) -> Path:
        """Save the window as ``shots/app_<name>.png``, scrolled to the top."""
        self.d.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.5)  # let plotly finish its transitions
        path = self.shots / f"app_{name}.png"
        self.d.save_screenshot(str(path))
        return path
