"""A run's progress as Server-Sent Events: the API's stream (each change, then `end`), the
run page's (the live part rendered), one read per watched run whatever the number of
readers, and the end of a stream whose reader lost access, or whose run was deleted;
another organization's run is a 404 before any stream starts."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.api import streams
from app.core.database import Database
from app.models import RunResponse
from app.runs.watch import RunWatch, _changed
from app.tables import CollectionRun, RunStatus
from tests.helpers.actors import Actor, Actors
from tests.helpers.browser import BrowserFactory
from tests.helpers.directory import new_run


def _events(body: str) -> list[tuple[str, str]]:
    """(event, data) of each event of a text/event-stream body."""
    found = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        event = next((line[6:].strip() for line in lines if line.startswith("event:")), "")
        data = "\n".join(line[5:].removeprefix(" ") for line in lines if line.startswith("data:"))
        if event:
            found.append((event, data))
    return found


async def _set(database: Database, run_id: uuid.UUID, **values: Any) -> None:
    async with database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun).where(CollectionRun.id == run_id).values(**values)
        )


async def _paused(client: httpx.AsyncClient, database: Database, admin: Actor) -> uuid.UUID:
    """A paused run, which no instance executes: the test moves it."""
    run_id = await new_run(client, admin)  # made and cancelled
    await _set(database, run_id, status=RunStatus.PAUSED, finished_at=None)
    return run_id


async def _streaming(
    client: httpx.AsyncClient, actor: Actor, run_id: uuid.UUID, watch: RunWatch
) -> asyncio.Task[httpx.Response]:
    """The request of the run's event stream, once its watcher has started."""
    stream = asyncio.create_task(
        client.get(f"/collection/runs/{run_id}/events", headers=actor.headers)
    )
    await _until_watched(watch)
    return stream


async def _until_watched(watch: RunWatch) -> None:
    for _ in range(500):
        if watch.watched:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the stream did not start")


async def test_the_stream_sends_each_change_then_the_end(
    client: httpx.AsyncClient, actors: Actors, database: Database, app: FastAPI
) -> None:
    admin = await actors.admin()
    run_id = await _paused(client, database, admin)
    watch: RunWatch = app.state.instance.run_watch
    stream = await _streaming(client, admin, run_id, watch)
    await asyncio.sleep(0.05)
    await _set(database, run_id, sellers_found=7)
    watch.poke(run_id)
    await asyncio.sleep(0.05)
    await _set(database, run_id, status=RunStatus.COMPLETED, sellers_found=9)
    watch.poke(run_id)
    response = await asyncio.wait_for(stream, 10)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    events = _events(response.text)
    assert [name for name, _ in events] == ["run", "run", "run", "end"]
    states = [json.loads(data) for _, data in events[:3]]
    assert [(s["status"], s["progress"]["sellers_found"]) for s in states] == [
        ("paused", 0),
        ("paused", 7),
        ("completed", 9),
    ]
    assert states[0]["id"] == str(run_id)
    assert json.loads(events[3][1]) == {"reason": "ended"}
    assert "retry: 3000" in response.text
    assert watch.watched == 0  # the watcher went with its last reader


async def test_readers_of_one_run_share_one_watcher(
    client: httpx.AsyncClient, actors: Actors, database: Database, app: FastAPI
) -> None:
    admin = await actors.admin()
    run_id = await _paused(client, database, admin)
    watch = RunWatch(database, app.state.instance.runs.clock, interval=0.02)
    reads = 0
    read = watch._read

    async def counted(org_id: uuid.UUID, run: uuid.UUID) -> Any:
        nonlocal reads
        reads += 1
        return await read(org_id, run)

    watch._read = counted  # type: ignore[method-assign]
    assert admin.org_id is not None

    async def reader() -> list[RunStatus]:
        return [state.status async for state in watch.follow(admin.org_id, run_id)]  # type: ignore[arg-type]

    readers = [asyncio.create_task(reader()) for _ in range(20)]
    await _until_watched(watch)
    await asyncio.sleep(0.3)
    await _set(database, run_id, status=RunStatus.FAILED)
    seen = await asyncio.wait_for(asyncio.gather(*readers), 10)
    assert all(statuses == [RunStatus.PAUSED, RunStatus.FAILED] for statuses in seen), seen
    assert watch.watched == 0
    # one read per interval for all 20 readers (0.3 s / 0.02 s ~ 15, with slack for a busy
    # machine); each reader reading for itself would have made 20 times that
    assert reads < 60, reads


async def test_a_deleted_run_ends_its_stream(
    client: httpx.AsyncClient, actors: Actors, database: Database, app: FastAPI
) -> None:
    admin = await actors.admin()
    run_id = await _paused(client, database, admin)
    watch: RunWatch = app.state.instance.run_watch
    stream = await _streaming(client, admin, run_id, watch)
    async with database.transaction() as session:
        await session.execute(sa.delete(CollectionRun).where(CollectionRun.id == run_id))
    watch.poke(run_id)
    response = await asyncio.wait_for(stream, 10)
    events = _events(response.text)
    assert [name for name, _ in events] == ["run", "end"]
    assert json.loads(events[-1][1]) == {"reason": "deleted"}


async def test_a_removed_member_loses_the_stream(
    client: httpx.AsyncClient,
    actors: Actors,
    database: Database,
    app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streams, "RECHECK_SECONDS", 0.0)
    admin = await actors.admin()
    viewer = await actors.member(admin, "viewer")
    run_id = await _paused(client, database, admin)
    watch: RunWatch = app.state.instance.run_watch
    stream = await _streaming(client, viewer, run_id, watch)
    removed = await client.delete(f"/orgs/current/members/{viewer.user_id}", headers=admin.headers)
    assert removed.status_code == 204, removed.text
    await _set(database, run_id, sellers_found=3)
    watch.poke(run_id)
    response = await asyncio.wait_for(stream, 10)
    events = _events(response.text)
    assert [name for name, _ in events] == ["run", "end"]  # the change was not sent
    assert json.loads(events[-1][1]) == {"reason": "access"}
    again = await client.get(f"/collection/runs/{run_id}/events", headers=viewer.headers)
    assert again.status_code == 403


async def test_no_stream_of_another_organizations_run(
    client: httpx.AsyncClient, actors: Actors, database: Database
) -> None:
    admin, stranger = await actors.admin(), await actors.admin("Other")
    theirs = await _paused(client, database, stranger)
    response = await client.get(f"/collection/runs/{theirs}/events", headers=admin.headers)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"] == f"run {theirs} not found"
    anonymous = await client.get(f"/collection/runs/{theirs}/events")
    assert anonymous.status_code == 401
    schema = (await client.get("/openapi.json")).json()
    assert "text/event-stream" in json.dumps(schema["paths"]["/collection/runs/{run_id}/events"])


async def test_the_run_page_streams_its_live_part(
    client: httpx.AsyncClient,
    actors: Actors,
    database: Database,
    browser: BrowserFactory,
) -> None:
    admin, stranger = await actors.admin(), await actors.admin("Other")
    run_id = await _paused(client, database, admin)
    signed_in = await browser(admin)
    page = await signed_in.get(f"/runs/{run_id}")
    assert f'data-events-url="/runs/{run_id}/events"' in page.text
    await _set(database, run_id, status=RunStatus.COMPLETED)
    response = await signed_in.get(f"/runs/{run_id}/events")
    assert response.status_code == 200
    events = _events(response.text)
    assert [name for name, _ in events] == ["live", "end"]
    live = events[0][1]
    assert re.match(r'^<section id="run-live" class="card live"', live)
    assert "data-finished" in live
    assert "Completed" in live

    theirs = await _paused(client, database, stranger)
    assert (await signed_in.get(f"/runs/{theirs}/events")).status_code == 404
    anonymous = await browser()
    assert (await anonymous.get(f"/runs/{run_id}/events")).status_code == 303


def test_a_clock_moving_is_news_only_while_the_run_runs() -> None:
    paused = RunResponse.model_construct(
        id=uuid.uuid4(), status=RunStatus.PAUSED, elapsed_seconds=60
    )
    assert not _changed(paused, paused.model_copy(update={"elapsed_seconds": 61}))
    assert _changed(paused, paused.model_copy(update={"status": RunStatus.RUNNING}))
    running = paused.model_copy(update={"status": RunStatus.RUNNING})
    assert _changed(running, running.model_copy(update={"elapsed_seconds": 61}))


async def test_a_signed_out_page_loses_its_stream(
    client: httpx.AsyncClient,
    actors: Actors,
    database: Database,
    app: FastAPI,
    browser: BrowserFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streams, "RECHECK_SECONDS", 0.0)
    admin = await actors.admin()
    run_id = await _paused(client, database, admin)
    watch: RunWatch = app.state.instance.run_watch
    signed_in = await browser(admin)
    stream = asyncio.create_task(signed_in.get(f"/runs/{run_id}/events"))
    await _until_watched(watch)
    other = await browser(admin)  # the same person's second browser signs out everywhere
    out = await other.submit("/sign-out/everywhere", page="/account")
    assert out.status_code in (200, 303), out.text
    await _set(database, run_id, sellers_found=3)
    watch.poke(run_id)
    response = await asyncio.wait_for(stream, 10)
    events = _events(response.text)
    assert [name for name, _ in events] == ["live", "end"]
    assert json.loads(events[-1][1]) == {"reason": "access"}
