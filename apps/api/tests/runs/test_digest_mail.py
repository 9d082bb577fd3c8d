"""Digest mails after scheduled runs, through a real (local) SMTP server and, without one,
as log lines: one per subscribed member with their own preferences, none to the others,
none for manual runs, and none when a member's digest has nothing to tell."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.core.database import Database
from app.runs.notifications import Mailer
from app.watchlists.mail import mail_digests, send_digests
from tests.helpers.actors import Actor, Actors
from tests.helpers.mail import Inbox, smtp_mailer, smtp_server
from tests.helpers.runs import executed_here
from tests.helpers.scheduling import EPOCH, FakeClock, Org, enable, make_org
from tests.helpers.web import wait_until

SECTIONS = ("new_in_top", "watched_appeared", "watched_vanished", "watched_moved")


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, str]]:
    with smtp_server() as server:
        yield server


async def _scheduled_run(client: httpx.AsyncClient, app: FastAPI, org: Org) -> str:
    """A run of the organization's schedule, run to completion (finish hooks included)."""
    fired = await client.post("/collection/schedule/trigger", headers=org.admin.headers)
    assert fired.status_code == 201, fired.text
    run_id: str = fired.json()["run_id"]
    await wait_until(client, org.admin, run_id, "completed")
    await executed_here(app.state.instance.executor, run_id)
    return run_id


async def _prefs(client: httpx.AsyncClient, actor: Actor, **body: Any) -> None:
    response = await client.patch("/me/digest", json=body, headers=actor.headers)
    assert response.status_code == 200, response.text


async def _star_some_changes(client: httpx.AsyncClient, admin: Actor, run_id: str) -> None:
    """Star a seller of each kind of change of the run (so every digest has news)."""
    changes = (await client.get(f"/collection/runs/{run_id}/changes", headers=admin.headers)).json()
    picks = [changes[section]["items"][:1] for section in ("new_sellers", "gone_sellers")]
    picks.append([m for m in changes["movers"]["items"] if abs(m["rank_change"]) >= 2][:1])
    assert all(picks), "the market drifted too little to have each kind of change"
    for (item,) in picks:
        starred = await client.put(
            f"/collection/watchlist/{item['username']}", headers=admin.headers
        )
        assert starred.status_code == 201, starred.text


async def _digest(client: httpx.AsyncClient, actor: Actor, run_id: str) -> dict[str, Any]:
    response = await client.get(f"/collection/runs/{run_id}/digest", headers=actor.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _line(section: str, item: dict[str, Any]) -> str:
    """How the mail shows an item of a section (the start of its line)."""
    if section == "watched_vanished":
        return f"{item['username']} (was #{item['against_rank']}, "
    if section == "watched_moved":
        return f"{item['rank']:>4}. {item['username']} (was #{item['against_rank']}: "
    return f"{item['rank']:>4}. {item['username']} ("


async def test_a_completed_scheduled_run_mails_each_subscribed_member_their_digest(
    client: httpx.AsyncClient,
    actors: Actors,
    app: FastAPI,
    settings: Settings,
    database: Database,
    clock: FakeClock,
    smtp: tuple[Inbox, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    inbox, url = smtp
    org = await make_org(client, actors)
    member = await actors.member(org.admin, "member")
    viewer = await actors.member(org.admin, "viewer")
    quitter = await actors.member(org.admin, "member")
    await actors.member(org.admin, "member")  # never subscribed
    await _prefs(client, member, subscribed=True, top_n=50, rank_threshold=2)
    await _prefs(client, viewer, subscribed=True, top_n=1, rank_threshold=1000)
    await _prefs(client, quitter, subscribed=True)
    await _prefs(client, quitter, subscribed=False)
    await enable(client, org)
    assert mail_digests in [
        getattr(hook, "func", None) for hook in app.state.instance.executor.on_finished
    ]

    clock.set(EPOCH)
    first = await _scheduled_run(client, app, org)
    await send_digests(database, smtp_mailer(settings, url), uuid.UUID(first))
    assert inbox.messages == []  # nothing to compare the first run with: no mail
    assert any(
        "no mail" in r.getMessage() and "no earlier completed run" in r.getMessage()
        for r in caplog.records
    )

    clock.set(EPOCH + timedelta(days=40))  # another market day: the market has drifted
    second = await _scheduled_run(client, app, org)
    await _star_some_changes(client, org.admin, second)
    mailer = smtp_mailer(settings, url)
    await mail_digests(database, mailer, uuid.UUID(second))  # the executor's hook
    await mailer.drain()

    by_recipient = {message["X-Rcpt-To"]: message for message in inbox.messages}
    assert len(inbox.messages) == len(by_recipient) == 2
    assert set(by_recipient) == {member.email, viewer.email}
    run_name = (await client.get(f"/collection/runs/{second}", headers=member.headers)).json()[
        "name"
    ]
    for actor in (member, viewer):
        message = by_recipient[actor.email]
        assert message["Subject"] == f"Collection digest: {run_name}"
        body = message.get_content()
        assert f"/runs/{second}" in body
        digest = await _digest(client, actor, second)
        assert any(digest[section] for section in SECTIONS)
        for section in SECTIONS:
            for item in digest[section]:
                assert _line(section, item) in body, (section, item)
        assert ("New sellers in the top" in body) == bool(digest["new_in_top"])
        assert ("that moved" in body) == bool(digest["watched_moved"])
    # each with their own preferences
    assert len((await _digest(client, viewer, second))["new_in_top"]) <= 1
    assert "that moved 2 places or more (1):" in by_recipient[member.email].get_content()
    assert "that moved" not in by_recipient[viewer.email].get_content()


async def test_without_smtp_each_digest_is_a_log_line(
    client: httpx.AsyncClient,
    actors: Actors,
    app: FastAPI,
    settings: Settings,
    database: Database,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    org = await make_org(client, actors)
    member = await actors.member(org.admin, "member")
    await _prefs(client, member, subscribed=True)
    await enable(client, org)
    clock.set(EPOCH)
    await _scheduled_run(client, app, org)
    clock.set(EPOCH + timedelta(days=40))
    second = await _scheduled_run(client, app, org)
    await _star_some_changes(client, org.admin, second)

    mailer = Mailer(settings)
    assert not mailer.configured
    caplog.clear()
    await send_digests(database, mailer, uuid.UUID(second))
    lines = [r.getMessage() for r in caplog.records if "SMTP_URL not set" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith(f"mail (SMTP_URL not set) to {member.email}: Collection digest:")
    assert f"/runs/{second}" in lines[0]


async def test_manual_runs_send_no_digest(
    client: httpx.AsyncClient,
    actors: Actors,
    settings: Settings,
    database: Database,
    clock: FakeClock,
    smtp: tuple[Inbox, str],
) -> None:
    inbox, url = smtp
    org = await make_org(client, actors)
    await _prefs(client, org.admin, subscribed=True, top_n=100)
    runs = []
    for day in (0, 40):
        clock.set(EPOCH + timedelta(days=day))
        created = await client.post(
            "/collection/runs", json={"preset_id": org.preset_id}, headers=org.admin.headers
        )
        run_id = created.json()["id"]
        await client.post(f"/collection/runs/{run_id}/start", headers=org.admin.headers)
        await wait_until(client, org.admin, run_id, "completed")
        runs.append(run_id)
    assert (await _digest(client, org.admin, runs[1]))["new_in_top"]  # news, yet:
    await send_digests(database, smtp_mailer(settings, url), uuid.UUID(runs[1]))
    assert inbox.messages == []
