"""How long a run has been going and about how long it has left: the pure estimate from a
run's figures and paces, then the paces measured from checkpoint timestamps (GET
/collection/runs/{id} with an injected clock)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from app.core.database import Database
from app.runs.pace import MIN_SEARCHES, WINDOW, Pace, elapsed, estimate
from app.tables import CollectionRun, RunCategory, RunPhase, RunProduct, RunStatus
from tests.helpers.actors import Actor, Actors
from tests.helpers.scheduling import EPOCH, FakeClock

NOW = EPOCH


@dataclass(frozen=True)
class Figures:
    status: RunStatus = RunStatus.RUNNING
    phase: RunPhase | None = RunPhase.EBAY
    started_at: datetime | None = NOW - timedelta(minutes=10)
    finished_at: datetime | None = None
    resumes_at: datetime | None = None
    categories_total: int = 4
    categories_done: int = 4
    products_found: int = 100
    products_searched: int = 40


def test_the_ebay_phase_is_estimated_from_the_pace_of_its_searches() -> None:
    timing = estimate(Figures(), now=NOW, ebay=Pace(done=50, seconds=100))
    assert timing.elapsed == timedelta(minutes=10)
    assert timing.remaining == timedelta(seconds=120)  # 60 products left at 2 s each
    assert timing.finishes_at == NOW + timedelta(seconds=120)
    assert timing.note == "From the pace of the last 50 eBay searches."


def test_a_quota_wait_under_way_is_added() -> None:
    waiting = Figures(resumes_at=NOW + timedelta(minutes=5))
    timing = estimate(waiting, now=NOW, ebay=Pace(done=50, seconds=100))
    assert timing.remaining == timedelta(seconds=300 + 120)
    assert "quota wait" in timing.note
    past = estimate(
        Figures(resumes_at=NOW - timedelta(minutes=1)), now=NOW, ebay=Pace(done=50, seconds=100)
    )
    assert past.remaining == timedelta(seconds=120)  # a wait over adds nothing


@pytest.mark.parametrize("done", [0, MIN_SEARCHES - 1])
def test_too_few_searches_give_no_estimate(done: int) -> None:
    timing = estimate(Figures(), now=NOW, ebay=Pace(done=done, seconds=30))
    assert timing.remaining is None
    assert timing.finishes_at is None
    assert timing.note == "No estimate until a few eBay searches are done."
    assert timing.elapsed == timedelta(minutes=10)


def test_searches_that_took_no_measurable_time_give_no_estimate() -> None:
    assert estimate(Figures(), now=NOW, ebay=Pace(done=10, seconds=0)).remaining is None


def test_every_product_searched_means_finishing() -> None:
    timing = estimate(Figures(products_searched=100), now=NOW, ebay=None)
    assert timing.remaining == timedelta(0)
    assert "finishing" in timing.note


def test_the_amazon_phase_adds_the_projected_ebay_phase_at_the_last_runs_pace() -> None:
    amazon = Figures(phase=RunPhase.AMAZON, categories_done=1, products_found=20)
    # 3 categories left at 60 s each, then 80 products (20 per category) at 0.5 s each
    timing = estimate(
        amazon,
        now=NOW,
        amazon=Pace(done=1, seconds=60),
        ebay=Pace(done=200, seconds=100),
        ebay_from_earlier_run=True,
    )
    assert timing.remaining == timedelta(seconds=180 + 40)
    assert "the eBay searches of the last completed run" in timing.note


def test_the_amazon_phase_without_an_earlier_run_or_a_category_gives_no_estimate() -> None:
    amazon = Figures(phase=RunPhase.AMAZON, categories_done=1, products_found=20)
    alone = estimate(amazon, now=NOW, amazon=Pace(done=1, seconds=60), ebay=None)
    assert alone.remaining is None
    assert "until the eBay searches begin" in alone.note
    first = estimate(
        replace(amazon, categories_done=0, products_found=0),
        now=NOW,
        amazon=Pace(done=0, seconds=60),
        ebay=Pace(done=200, seconds=100),
    )
    assert first.remaining is None
    assert first.note == "No estimate until the first category is collected."


@pytest.mark.parametrize(
    ("status", "note"),
    [
        (RunStatus.PAUSED, "No estimate while the run is paused."),
        (RunStatus.PAUSING, "No estimate while the run pauses."),
        (RunStatus.CANCELLING, "The run is being cancelled."),
    ],
)
def test_a_run_not_running_has_no_estimate_but_its_elapsed_time(
    status: RunStatus, note: str
) -> None:
    timing = estimate(Figures(status=status), now=NOW, ebay=Pace(done=50, seconds=100))
    assert (timing.elapsed, timing.remaining, timing.note) == (timedelta(minutes=10), None, note)


def test_before_the_start_nothing_is_known_and_after_the_finish_the_duration() -> None:
    pending = Figures(status=RunStatus.PENDING, phase=None, started_at=None)
    assert estimate(pending, now=NOW) == estimate(pending, now=NOW + timedelta(days=1))
    assert estimate(pending, now=NOW).elapsed is None
    assert estimate(pending, now=NOW).note == "No estimate before the run starts."
    done = Figures(status=RunStatus.COMPLETED, finished_at=NOW - timedelta(minutes=4))
    timing = estimate(done, now=NOW + timedelta(hours=5))
    assert timing.elapsed == timedelta(minutes=6)  # start to finish, whenever it is read
    assert timing.remaining is None


def test_elapsed_time_is_never_negative() -> None:
    clock_skew = Figures(started_at=NOW + timedelta(seconds=3))
    assert elapsed(clock_skew, NOW) == timedelta(0)


# --- measured from the checkpoints ----------------------------------------------------------


async def _running_run(
    client: httpx.AsyncClient, admin: Actor, database: Database, *, searched: list[datetime]
) -> str:
    """A run in its eBay phase since NOW - 10 min, 100 products found, `searched` at those
    times (as the eBay checkpoints write them)."""
    created = await client.post(
        "/collection/runs", json={"category_ids": ["1", "2"]}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    run_id = uuid.UUID(created.json()["id"])
    async with database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == run_id)
            .values(
                status=RunStatus.RUNNING,
                phase=RunPhase.EBAY,
                started_at=NOW - timedelta(minutes=12),
                categories_done=2,
                products_found=100,
                products_searched=len(searched),
                # executed by another instance (so this one's sweep leaves it alone)
                lease_owner="elsewhere",
                lease_expires_at=NOW + timedelta(days=365),
            )
        )
        await session.execute(
            sa.update(RunCategory)
            .where(RunCategory.run_id == run_id)
            .values(done_at=NOW - timedelta(minutes=10))
        )
        products = [
            {
                "run_id": run_id,
                "asin": f"B{i:09d}",
                "category_id": "1",
                "category_position": 0,
                "sales_rank": i + 1,
                "title": "A product",
                "currency": "USD",
                "upcs": [],
                "eans": [],
                "searched_at": searched[i] if i < len(searched) else None,
            }
            for i in range(100)
        ]
        await session.execute(sa.insert(RunProduct), products)
    return str(run_id)


async def test_the_api_estimates_from_the_latest_searches(
    client: httpx.AsyncClient, admin: Actor, database: Database, clock: FakeClock
) -> None:
    # 60 searches, one every 2 s, the last 2 s ago: the window's 50 took 102 s since the
    # one before them, so the 40 products left take 81.6 s.
    start = NOW - timedelta(seconds=120)
    run_id = await _running_run(
        client, admin, database, searched=[start + timedelta(seconds=2 * i) for i in range(60)]
    )
    body = (await client.get(f"/collection/runs/{run_id}", headers=admin.headers)).json()
    assert body["elapsed_seconds"] == 12 * 60
    assert body["eta"] == {
        "remaining_seconds": 82,
        "finishes_at": (NOW + timedelta(seconds=82)).isoformat().replace("+00:00", "Z"),
        "note": f"From the pace of the last {WINDOW} eBay searches.",
    }
    listed = (await client.get("/collection/runs", headers=admin.headers)).json()["items"]
    assert [(r["elapsed_seconds"], r["eta"]) for r in listed] == [(12 * 60, None)]

    clock.set(NOW + timedelta(seconds=98))  # nothing searched since: the pace slows down
    later = (await client.get(f"/collection/runs/{run_id}", headers=admin.headers)).json()
    assert later["eta"]["remaining_seconds"] == 160  # 40 products at 200 s / 50


async def test_an_early_ebay_phase_counts_from_its_start(
    client: httpx.AsyncClient, admin: Actor, database: Database, clock: FakeClock
) -> None:
    # 10 searches in the 10 minutes since the last category was collected: 60 s each.
    searched = [NOW - timedelta(seconds=30 * i) for i in range(10)]
    run_id = await _running_run(client, admin, database, searched=searched)
    body = (await client.get(f"/collection/runs/{run_id}", headers=admin.headers)).json()
    assert body["eta"]["remaining_seconds"] == 90 * 60
    assert body["eta"]["note"] == "From the pace of the last 10 eBay searches."


async def test_a_finished_run_has_its_duration_and_no_eta(
    client: httpx.AsyncClient, admin: Actor, database: Database, clock: FakeClock
) -> None:
    run_id = await _running_run(client, admin, database, searched=[])
    async with database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == uuid.UUID(run_id))
            .values(status=RunStatus.COMPLETED, finished_at=NOW - timedelta(minutes=2))
        )
    body = (await client.get(f"/collection/runs/{run_id}", headers=admin.headers)).json()
    assert (body["elapsed_seconds"], body["eta"]) == (10 * 60, None)


async def _finished_earlier(
    client: httpx.AsyncClient, admin: Actor, database: Database, *, searched: int, seconds: int
) -> None:
    """A completed run of the organization whose eBay phase searched `searched` products
    in `seconds`."""
    run_id = uuid.UUID(await _running_run(client, admin, database, searched=[]))
    phase_start = NOW - timedelta(hours=2)
    async with database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == run_id)
            .values(
                status=RunStatus.COMPLETED,
                products_searched=searched,
                finished_at=phase_start + timedelta(seconds=seconds),
            )
        )
        await session.execute(
            sa.update(RunCategory).where(RunCategory.run_id == run_id).values(done_at=phase_start)
        )


async def test_the_amazon_phase_borrows_the_ebay_pace_of_the_last_completed_run(
    client: httpx.AsyncClient, actors: Actors, database: Database, clock: FakeClock
) -> None:
    admin, stranger = await actors.admin(), await actors.admin("Other")
    await _finished_earlier(client, stranger, database, searched=200, seconds=10)  # not ours
    created = await client.post(
        "/collection/runs", json={"category_ids": ["1", "2"]}, headers=admin.headers
    )
    run_id = created.json()["id"]
    async with database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == uuid.UUID(run_id))
            .values(
                status=RunStatus.RUNNING,
                phase=RunPhase.AMAZON,
                started_at=NOW - timedelta(seconds=60),
                categories_done=1,
                products_found=20,
                lease_owner="elsewhere",
                lease_expires_at=NOW + timedelta(days=365),
            )
        )
    alone = (await client.get(f"/collection/runs/{run_id}", headers=admin.headers)).json()
    assert alone["eta"]["remaining_seconds"] is None  # another organization's pace is not used
    assert "until the eBay searches begin" in alone["eta"]["note"]

    async with database.transaction() as session:  # (room for the next run)
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == uuid.UUID(run_id))
            .values(status=RunStatus.CANCELLED)
        )
    await _finished_earlier(client, admin, database, searched=200, seconds=100)
    async with database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == uuid.UUID(run_id))
            .values(status=RunStatus.RUNNING, finished_at=None, lease_owner="elsewhere")
        )
    # 1 category left at 60 s, then 40 products (20 a category) at 0.5 s each
    body = (await client.get(f"/collection/runs/{run_id}", headers=admin.headers)).json()
    assert body["eta"]["remaining_seconds"] == 60 + 20
    assert "the eBay searches of the last completed run" in body["eta"]["note"]
