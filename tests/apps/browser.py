"""What the browser tests share: the helpers of ``apps.gradio_app.browser`` (the app started on a runs
folder, headless Chromium, helpers over the Gradio page), and a skip when Chromium is not installed."""
from __future__ import annotations

import pytest

from apps.gradio_app.browser import (ROOT, BrowserError, Page, chromium, missing_browser,  # noqa: F401
                                     running_app, wait_for)


def skip_without_chromium() -> None:
    """Skip the calling test unless Chromium, chromedriver and selenium are installed."""
    why = missing_browser()
    if why:
        pytest.skip(why)
