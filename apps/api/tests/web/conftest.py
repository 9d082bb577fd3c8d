"""Fixtures of the browser tests (test_web_e2e, test_web_phone_e2e): a fresh `serve`
process per test, Chromium, and a page in it.

The Chromium fixtures import tests.helpers.chromium when they run, never at the top of this
file: importing it skips the importing module when Chromium is missing, and a conftest must
not be skipped. By then the browser test module has imported it (or been skipped).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.helpers.databases import temp_database
from tests.helpers.processes import Server, clean_env, wait_healthy


@pytest.fixture
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, dict[str, str]]]:
    """A fresh embedded-default deployment (no JWT_SECRET) with fast, small runs, one per
    test: the one-time sign-in link belongs to whoever administers the first organization,
    so a test must not inherit another's. A test parametrizes it (indirect) with settings
    of its own."""
    tmp_path = tmp_path_factory.mktemp("web-e2e")
    settings = {
        "DATA_DIR": str(tmp_path / "data"),
        "SAMPLE_PROVIDER_LATENCY_MS": "0",
        "RUN_PRODUCTS_PER_CATEGORY": "5",
        "RUN_LISTINGS_PER_PRODUCT": "5",
        **getattr(request, "param", {}),
    }
    base = os.environ.get("TEST_DATABASE_URL")
    database = temp_database(base, "web") if base else contextlib.nullcontext(None)
    with database as url:
        env = clean_env(**settings, **({"DATABASE_URL": url} if url else {}))
        process = Server(env, tmp_path, "web")
        try:
            wait_healthy(process.url, process.process)
            yield process, env
        finally:
            process.stop()
    assert "Traceback" not in process.logs()


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Any]:
    """Debian's Chromium, driven by Playwright's async API on the tests' event loop (its sync
    API would hold an event loop of its own, which the suite's async fixtures trip over)."""
    from tests.helpers.chromium import CHROMIUM, CHROMIUM_ARGS, playwright

    async with playwright.async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(chromium: Any) -> AsyncIterator[Any]:
    from tests.helpers.chromium import TIMEOUT_MS

    context = await chromium.new_context(
        accept_downloads=True,
        viewport={"width": 1280, "height": 900},
        locale="en-US",
        timezone_id="Asia/Tokyo",
    )
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield await context.new_page()
    finally:
        await context.close()
