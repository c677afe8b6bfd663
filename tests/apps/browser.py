"""What the browser tests share: `pldc app` started on a runs folder, headless Chromium, and small
helpers over the Gradio page (waiting, tabs, tables, plotly figures)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync", "--window-size=1500,1250"]
STEP_TIMEOUT = 60


def skip_without_chromium() -> None:
    """Skip the calling test unless Debian's chromium and chromium-driver are installed."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(f"needs the Debian chromium and chromium-driver packages ({CHROMIUM}, {CHROMEDRIVER})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(runs_root: Path, data_root: Path, log_path: Path, run: str | None = None,
                start_timeout: float = 180):
    """`pldc app` on ``runs_root`` in a process of its own; yields its URL once it answers."""
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PLDC_NO_PROGRESS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "apps.cli", "app", "--runs-dir", str(runs_root), "--data-root", str(data_root),
               "--port", str(port)] + (["--run", run] if run else [])
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
                pytest.fail(f"the app did not start: {log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        text = log_path.read_text(errors="replace")
        if "Traceback" in text:
            print(f"the app logged errors:\n{text[-6000:]}")


@contextmanager
def chromium(profile_dir: Path):
    """Headless Chromium driven by selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_script_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def wait_for(condition, what: str, timeout: float = STEP_TIMEOUT):
    """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
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
    pytest.fail(f"timed out waiting for {what} (last error: {last_error!r})")


class Page:
    """Small helpers over the Gradio page."""

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

    def tab(self, name: str) -> None:
        from selenium.webdriver.common.by import By

        def click():
            for button in self.d.find_elements(By.CSS_SELECTOR, "button[role=tab]"):
                if button.text.strip() == name:
                    button.click()
                    return True
            return False
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

        self.click(f"#{elem_id} input")
        wait_for(lambda: [o for o in self.d.find_elements(By.CSS_SELECTOR, "ul[role=listbox] li")
                          if o.text.strip() == option], f"option {option} of {elem_id}")[0].click()

    def shot(self, name: str) -> None:
        self.d.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.5)  # let plotly finish its transitions
        self.d.save_screenshot(str(self.shots / f"app_{name}.png"))
