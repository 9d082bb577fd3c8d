"""Fixtures of the provider tests: a fake eBay and a fake Keepa on loopback (one server per
test module, reset before each test), and an HTTP client for the clients under test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.helpers.fake_marketplaces import FakeEbay, FakeKeepa, running_ebay, running_keepa


@pytest.fixture(scope="module")
def ebay_server() -> Iterator[FakeEbay]:
    with running_ebay() as fake:
        yield fake


@pytest.fixture(scope="module")
def keepa_server() -> Iterator[FakeKeepa]:
    with running_keepa() as fake:
        yield fake


@pytest.fixture
def ebay(ebay_server: FakeEbay) -> FakeEbay:
    ebay_server.reset()
    return ebay_server


@pytest.fixture
def keepa(keepa_server: FakeKeepa) -> FakeKeepa:
    keepa_server.reset()
    return keepa_server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client
