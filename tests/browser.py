"""The real browser of the tests: Debian's Chromium driven by Playwright (never `playwright install`), headless,
with flags that keep it off the network; a loud skip where it is missing, a failure under CI."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run", "--disable-quic"]
WAIT_MS = 60_000  # generous: the box may be loaded; every wait below is for an event, not a duration


def browser_or_skip() -> Any:
    """Playwright's sync API, or a loud skip (a failure under CI, where `make test` installs Chromium)."""
    missing = []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the playwright package (pip install -e '.[dashboard]')")
        sync_playwright = None
    if not os.access(CHROMIUM, os.X_OK) and shutil.which("chromium") != CHROMIUM:
        missing.append(f"Debian's Chromium at {CHROMIUM} (apt-get install -y chromium; `make test` does it)")
    if missing:
        reason = "BROWSER TEST NOT RUN: missing " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return sync_playwright


