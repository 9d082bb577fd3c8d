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

# The outermost elements that reach past the right edge, to say what to fix.
WIDE_ELEMENTS = """() => {
  const limit = document.documentElement.clientWidth;
  const clipped = (element) => {
    for (let up = element.parentElement; up && up !== document.body; up = up.parentElement) {
      if (getComputedStyle(up).overflowX !== "visible") return true;
    }
    return false;
  };
  const wide = [...document.querySelectorAll("body *")].filter((element) => {
    const box = element.getBoundingClientRect();
    return box.width > 0 && box.right > limit + 0.5 && !clipped(element);
  });
  return wide
    .filter((element) => !wide.includes(element.parentElement))
    .map((element) => {
      const classes = [...element.classList].map((name) => "." + name).join("");
      const text = element.textContent.trim().slice(0, 40);
      return `${element.tagName.toLowerCase()}${classes} ${text}`;
    });
}"""
