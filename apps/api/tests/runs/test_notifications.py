"""Mail to admins through a real (local) SMTP server: fire outcomes and run summaries."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.core.database import Database, DbActor, acting_as
from app.runs.notifications import Mailer, notify_run_ended
from app.scheduling.engine import CollectionScheduler
from app.scheduling.schedules import ScheduleService
from tests.helpers.actors import Actors
from tests.helpers.mail import Inbox, smtp_mailer, smtp_server
from tests.helpers.processes import free_port
from tests.helpers.scheduling import FakeClock, enable, make_org


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, str]]:
    with smtp_server() as server:
        yield server


def _mailer(settings: Settings, url: str) -> Mailer:
    return smtp_mailer(settings, url)


async def test_skipped_fire_mails_the_admins(
    client: httpx.AsyncClient,
    actors: Actors,
    app: FastAPI,
    settings: Settings,
    clock: FakeClock,
    smtp: tuple[Inbox, str],
) -> None:
    inbox, url = smtp
    org = await make_org(client, actors)
    second_admin = await actors.member(org.admin, "admin")
    await actors.member(org.admin, "member")  # members are not mailed
    await enable(client, org, notify_email=True)
    await client.post("/collection/runs", json={"category_ids": ["1"]}, headers=org.admin.headers)
    schedules: ScheduleService = app.state.instance.schedules
    engine = CollectionScheduler(
        schedules, app.state.instance.executor, _mailer(settings, url), settings, clock=clock
    )
    clock.set(datetime(2027, 2, 1, 0, 0, 1, tzinfo=UTC))
    results = await schedules.fire_due()
    engine.handle_fired(results)
    await engine.drain()
    (message,) = inbox.messages
    assert message["Subject"] == "Scheduled collection run skipped"
    assert sorted(message["X-Rcpt-To"].split(", ")) == sorted([org.admin.email, second_admin.email])
    assert "was still pending" in message.get_content()


async def test_no_mail_without_notify_email(
    client: httpx.AsyncClient,
    actors: Actors,
    app: FastAPI,
    settings: Settings,
    clock: FakeClock,
    smtp: tuple[Inbox, str],
) -> None:
    inbox, url = smtp
    org = await make_org(client, actors)
    await enable(client, org, notify_email=False)
    await client.post("/collection/runs", json={"category_ids": ["1"]}, headers=org.admin.headers)
    schedules: ScheduleService = app.state.instance.schedules
    engine = CollectionScheduler(
        schedules, app.state.instance.executor, _mailer(settings, url), settings, clock=clock
    )
    clock.set(datetime(2027, 2, 1, 0, 0, 1, tzinfo=UTC))
    engine.handle_fired(await schedules.fire_due())
    await engine.drain()
    assert inbox.messages == []


async def test_scheduled_run_end_sends_a_summary(
    client: httpx.AsyncClient,
    actors: Actors,
    app: FastAPI,
    settings: Settings,
    database: Database,
    clock: FakeClock,
    smtp: tuple[Inbox, str],
) -> None:
    inbox, url = smtp
    org = await make_org(client, actors)
    await enable(client, org, notify_email=True)
    fired = await client.post("/collection/schedule/trigger", headers=org.admin.headers)
    run_id = fired.json()["run_id"]
    for _ in range(500):
        run = (await client.get(f"/collection/runs/{run_id}", headers=org.admin.headers)).json()
        if run["status"] == "completed":
            break
        await asyncio.sleep(0.02)
    assert run["status"] == "completed"
    assert notify_run_ended in [
        getattr(h, "func", None) for h in app.state.instance.executor.on_finished
    ]

    await notify_run_ended(database, _mailer(settings, url), uuid.UUID(run_id))
    (message,) = inbox.messages
    assert message["Subject"] == "Scheduled collection run completed"
    body = message.get_content()
    assert f"({run_id})" in body
    assert "Top sellers" in body
    assert message["X-Rcpt-To"] == org.admin.email


async def test_a_members_cancel_still_mails_the_admins(
    client: httpx.AsyncClient,
    actors: Actors,
    app: FastAPI,
    settings: Settings,
    database: Database,
    smtp: tuple[Inbox, str],
) -> None:
    """The summary after a cancel runs in the cancelling request, whose role may not see
    the schedule (row-level security shows schedules to admins only): it is system work."""
    inbox, url = smtp
    org = await make_org(client, actors)
    member = await actors.member(org.admin, "member")
    await enable(client, org, notify_email=True)
    fired = await client.post("/collection/schedule/trigger", headers=org.admin.headers)
    run_id = uuid.UUID(fired.json()["run_id"])

    with acting_as(DbActor(user_id=member.user_id, org_id=member.org_id)):  # as cancel_run is
        await notify_run_ended(database, _mailer(settings, url), run_id)
    (message,) = inbox.messages
    assert message["Subject"].startswith("Scheduled collection run")
    assert message["X-Rcpt-To"] == org.admin.email


async def test_without_smtp_mail_is_logged(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    mailer = Mailer(settings)
    assert not mailer.configured
    with caplog.at_level("INFO"):
        await mailer.send(["a@example.com"], "Subject here", "Body")
    assert any("SMTP_URL not set" in r.getMessage() for r in caplog.records)


async def test_unreachable_smtp_is_logged_not_raised(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    mailer = _mailer(settings, f"smtp://127.0.0.1:{free_port()}")
    await mailer.send(["a@example.com"], "Subject", "Body")
    assert any("mail to a@example.com failed" in r.getMessage() for r in caplog.records)
