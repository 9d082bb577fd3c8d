"""Debian's Chromium driven by Playwright's async API, for the browser tests.

Importing this module skips the importing test module when Chromium or Playwright is
missing, so the browser test modules import it at the top, and the Chromium fixtures
(tests/web/conftest.py) import it only when they run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000

if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests skipped: no Chromium at {CHROMIUM} (`apt-get install chromium`; "
        "`make test` installs it)",
        allow_module_level=True,
    )
playwright = pytest.importorskip("playwright.async_api", reason="playwright is in the dev extra")
expect = playwright.expect
expect.set_options(timeout=TIMEOUT_MS)
