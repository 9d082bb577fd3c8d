"""The fair share of eBay's daily budget between organizations: the turn rule on its own,
the share it leads to, and the rule kept exactly by concurrent takers on the database (the
budget, an organization's cap and its turn), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app.core.database import Database
from app.providers.base import QuotaExhaustedError
from app.providers.fair_share import (
    MAX_TURN_WAIT,
    MIN_TURN_WAIT,
    Taker,
    charged_to,
    fair_share,
    refusal,
)
from app.tables import RunPhase, RunStatus
from tests.helpers.budget import budget, calls_taken, org_with_run

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
RESET = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def taker(calls: int, needs: int = 1000, **options: object) -> Taker:
    return Taker(uuid.uuid4(), calls, needs, **options)  # type: ignore[arg-type]


def refused(me: Taker, *others: Taker, left: int = 100, turn: int = 10) -> str | None:
    found = refusal(me, others, left=left, turn=turn, now=NOW, resets_at=RESET)
    return None if found is None else found.reason


# --- the rule ----------------------------------------------------------------------------------


def test_nothing_left_or_the_cap_reached_waits_for_the_next_day() -> None:
    spent = refusal(taker(0), [], left=0, turn=10, now=NOW, resets_at=RESET)
    assert spent is not None
    assert (spent.reason, spent.resume_at) == ("spent", RESET)
    capped = refusal(taker(7, cap=7), [], left=50, turn=10, now=NOW, resets_at=RESET)
    assert capped is not None
    assert (capped.reason, capped.resume_at) == ("capped", RESET)
    assert refused(taker(6, cap=7)) is None


def test_turns_only_when_what_is_left_cannot_cover_every_waiting_run() -> None:
    ahead, behind = taker(40, needs=30), taker(0, needs=30)
    assert refused(ahead, behind, left=60) is None  # 30 + 30 fit: no order needed
    assert refused(ahead, behind, left=59) == "turn"
    assert refused(ahead, behind, left=59, turn=0) is None  # first come, first served


def test_one_may_take_while_fewer_than_a_turn_ahead_of_the_last() -> None:
    assert refused(taker(19), taker(10), taker(30)) is None
    assert refused(taker(20), taker(10), taker(30)) == "turn"
    assert refused(taker(10), taker(20), taker(30)) is None  # the last is never held back


def test_others_with_nothing_to_wait_for_hold_nobody_back() -> None:
    me = taker(100)
    assert refused(me, taker(0, needs=0)) is None  # its run has every product searched
    assert refused(me, taker(3, cap=3)) is None  # at its cap: it waits for tomorrow
    assert refused(me) is None


def test_the_wait_is_until_the_ones_behind_catch_up_at_their_pace() -> None:
    me = taker(50, seconds_per_call=0.1)
    slow = taker(20, seconds_per_call=2.0)
    fast = taker(30, seconds_per_call=0.5)
    found = refusal(me, [slow, fast], left=100, turn=10, now=NOW, resets_at=RESET)
    assert found is not None
    assert (found.reason, found.sharing, found.left) == ("turn", 3, 100)
    assert found.resume_at == NOW + timedelta(seconds=60)  # 30 calls behind at 2 s each
    waiting = taker(45, seconds_per_call=1.0, waiting_until=NOW + timedelta(seconds=7))
    found = refusal(me, [waiting], left=100, turn=5, now=NOW, resets_at=RESET)
    assert found is not None
    assert found.resume_at == NOW + timedelta(seconds=12)
    never_measured = refusal(taker(50), [taker(0)], left=100, turn=5, now=NOW, resets_at=RESET)
    assert never_measured is not None  # 50 calls at the default pace of 1 s
    assert never_measured.resume_at == NOW + timedelta(seconds=50)
    nearly_done = taker(0, needs=5, seconds_per_call=1.0)  # leaves after 5 more calls
    found = refusal(me, [nearly_done], left=4, turn=5, now=NOW, resets_at=RESET)
    assert found is not None
    assert found.resume_at == NOW + timedelta(seconds=5)
    far = refusal(taker(5000), [taker(0)], left=100, turn=5, now=NOW, resets_at=RESET)
    assert far is not None
    assert far.resume_at == NOW + MAX_TURN_WAIT  # within bounds
    close = refusal(me, [taker(49, seconds_per_call=0.0)], left=9, turn=1, now=NOW, resets_at=RESET)
    assert close is not None
    assert close.resume_at == NOW + MIN_TURN_WAIT


def test_the_fair_share_evens_out_the_days_totals() -> None:
    me, late = taker(0, needs=500), taker(0, needs=500)
    assert fair_share(me, [late], 600) == 300
    head_start = taker(200, needs=300)
    shares = [
        fair_share(t, [o for o in (head_start, me, late) if o is not t], 600)
        for t in (head_start, me, late)
    ]
    assert shares == [66, 266, 266]  # the late ones catch up, then all three level off
    small = taker(0, needs=50)
    assert fair_share(me, [small], 600) == 500  # enough for both
    assert fair_share(small, [me], 300) == 50  # never more than it needs
    assert fair_share(me, [small], 300) == 250
    assert fair_share(taker(0, needs=500, cap=120), [late], 600) == 120


# --- on the database ---------------------------------------------------------------------------


async def take_until_spent(
    database: Database, limit: int, org_id: uuid.UUID, workers: int, turn: int
) -> dict[str, int]:
    """`workers` concurrent takers of `org_id` taking calls until the day's budget is spent,
    retrying at once when it is not their turn; the refusals they met, by kind."""
    shared = budget(database, limit, turn=turn)
    met = {"turn": 0, "capped": 0}
    rng = random.Random(str(org_id))

    async def worker() -> None:
        while True:
            try:
                with charged_to(org_id):
                    await shared.take()
            except QuotaExhaustedError as exc:
                if "spent" in str(exc):
                    return
                met["capped" if "cap" in (exc.limit or "") else "turn"] += 1
            await asyncio.sleep(rng.uniform(0, 0.002))

    await asyncio.gather(*(worker() for _ in range(workers)))
    return met


async def test_concurrent_organizations_end_within_a_turn_of_the_fair_share(
    database: Database,
) -> None:
    """A tight budget, four organizations with one to eight takers each (a fast one cannot
    take more for being fast): each ends within one turn of an even share, and the budget
    is spent exactly."""
    limit, turn = 240, 6
    orgs = [await org_with_run(database, f"org {n}") for n in range(4)]
    met = await asyncio.gather(
        *(
            take_until_spent(database, limit, org_id, workers, turn)
            for org_id, workers in zip(orgs, (8, 1, 4, 2), strict=True)
        )
    )
    taken = await calls_taken(database)
    assert sum(taken.values()) == limit
    assert all(abs(taken[org_id] - limit / 4) <= turn for org_id in orgs), taken
    assert met[0]["turn"] > 0  # the fast one was held back


async def test_a_cap_is_exact_under_concurrency_and_leaves_the_rest_to_others(
    database: Database,
) -> None:
    capped = await org_with_run(database, "capped", cap=7)
    other = await org_with_run(database, "other")

    async def take(org_id: uuid.UUID, turn: int) -> str:
        try:
            with charged_to(org_id):
                await budget(database, 30, turn=turn).take()
        except QuotaExhaustedError as exc:
            return exc.limit or str(exc)
        return "taken"

    outcomes = await asyncio.gather(*(take(capped, 100) for _ in range(20)))
    assert outcomes.count("taken") == 7
    assert set(outcomes) - {"taken"} == {
        "the daily cap of your organization (7 eBay calls a day, all taken today)"
    }
    # at its cap it is out of the rotation: the other takes the rest, turns or not
    assert await asyncio.gather(*(take(other, 3) for _ in range(23))) == ["taken"] * 23
    assert await calls_taken(database) == {capped: 7, other: 23}


@pytest.mark.parametrize(
    ("status", "phase", "lease_for"),
    [
        (RunStatus.PAUSED, RunPhase.EBAY, timedelta(hours=1)),
        (RunStatus.RUNNING, RunPhase.AMAZON, timedelta(hours=1)),
        (RunStatus.RUNNING, RunPhase.EBAY, timedelta(seconds=-1)),  # its instance died
    ],
    ids=["paused", "amazon-phase", "lease-expired"],
)
async def test_an_organization_with_nothing_waiting_holds_nobody_back(
    database: Database, status: RunStatus, phase: RunPhase, lease_for: timedelta
) -> None:
    await org_with_run(database, "idle", status=status, phase=phase, lease_for=lease_for)
    busy = await org_with_run(database, "busy")
    shared = budget(database, 100, turn=2)
    with charged_to(busy):
        for _ in range(50):
            await shared.take()
    assert (await shared.status(busy)).mine.calls == 50


async def test_a_turn_refusal_says_who_shares_what_is_left(database: Database) -> None:
    ahead = await org_with_run(database, "ahead")
    behind = await org_with_run(database, "behind")
    shared = budget(database, 100, turn=2)
    with charged_to(ahead):
        await shared.take()
        await shared.take()
        before = datetime.now(UTC)
        with pytest.raises(QuotaExhaustedError) as caught:
            await shared.take()
    assert caught.value.limit == (
        "its turn at the eBay budget: 2 organizations share what is left today (98 calls)"
    )
    assert caught.value.resume_at > before
    with charged_to(behind):
        await shared.take()  # the one behind is never held back
    status = await shared.status(behind)
    assert (status.used, status.left, status.mine.calls) == (3, 97, 1)
    assert [other.calls for other in status.rivals()] == [2]


async def test_calls_charged_to_nobody_count_first_come_first_served(database: Database) -> None:
    ahead = await org_with_run(database, "ahead")
    await org_with_run(database, "behind")
    shared = budget(database, 10, turn=1)
    with charged_to(ahead):
        await shared.take()
    for _ in range(9):
        await shared.take()  # the providers check, a client on its own: no turns
    with pytest.raises(QuotaExhaustedError, match="spent by all instances"):
        await shared.take()
    assert await calls_taken(database) == {ahead: 1}
