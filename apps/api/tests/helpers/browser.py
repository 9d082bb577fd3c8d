"""A browser for in-process web tests: keeps cookies, signs in like a person, and sends
forms with the hidden fields the page gave them."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from tests.helpers.actors import Actor


class Browser:
    """A cookie-keeping client that signs in like a person and sends forms with CSRF."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def sign_in(self, token: str) -> httpx.Response:
        form = await self.http.get("/sign-in")
        nonce = csrf_of(form.text)
        return await self.http.post("/sign-in", data={"token": token, "csrf_token": nonce})

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(path, **kwargs)

    async def csrf(self, page: str = "/runs") -> str:
        return csrf_of((await self.http.get(page)).text)

    async def submit(
        self, path: str, data: dict[str, str] | None = None, *, page: str = "/runs"
    ) -> httpx.Response:
        """Post a form with the CSRF token and organization found on `page`, as the
        browser would."""
        html = (await self.http.get(page)).text
        return await self.http.post(path, data={**form_context_of(html), **(data or {})})


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def form_context_of(html: str) -> dict[str, str]:
    """The hidden fields a page's forms carry: the CSRF token and, on an organization's
    pages, the organization they were rendered for."""
    fields = {"csrf_token": csrf_of(html)}
    org = re.search(r'<meta name="collection-org" content="([^"]+)">', html)
    if org:
        fields["org_id"] = org.group(1)
    return fields


BrowserFactory = Callable[..., Awaitable[Browser]]


@asynccontextmanager
async def browsers(app: FastAPI) -> AsyncIterator[BrowserFactory]:
    """Opens browsers on `app`, each with its own cookie jar; `await open(actor)` signs in."""
    clients: list[httpx.AsyncClient] = []

    async def open_browser(
        actor: Actor | None = None, base_url: str = "http://testserver"
    ) -> Browser:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)
        clients.append(http)
        result = Browser(http)
        if actor is not None:
            response = await result.sign_in(actor.token)
            assert response.status_code == 303, response.text
        return result

    try:
        yield open_browser
    finally:
        for http in clients:
            await http.aclose()
