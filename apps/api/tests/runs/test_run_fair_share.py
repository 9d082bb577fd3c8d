"""Runs under a shared eBay budget (the sample provider counted as eBay): a run at its
organization's daily cap waits for the next day and says so; a run ahead of another
organization's waits for its turn, says so, and goes on once the other has had its own;
a run nobody shares the budget with is never held back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI

from app.core.clock import utcnow
from app.core.database import Database
from app.providers.budget import BudgetedEbayProvider
from app.providers.fair_share import FairDailyCallBudget, charged_to
from app.providers.sample import SampleEbayProvider
from app.tables import RunStatus
from tests.helpers.actors import Actor
from tests.helpers.budget import budgeted, calls_taken, org_with_run, terms
from tests.helpers.fake_marketplaces import providers_of
from tests.helpers.runs import create_run, finished, start, wait_for


def budgeted_ebay(database: Database, limit: int, turn: int) -> BudgetedEbayProvider:
    """The sample eBay provider, each search one call of a shared budget."""
    return BudgetedEbayProvider(
        SampleEbayProvider(), FairDailyCallBudget(database, terms(limit, turn=turn))
    )


def waiting(run: dict[str, Any]) -> bool:
    return run["resumes_at"] is not None


async def test_a_run_at_its_organizations_cap_waits_for_the_next_day(
    client: httpx.AsyncClient, admin: Actor, app: FastAPI, database: Database
) -> None:
    await client.patch(
        "/orgs/current/settings", json={"ebay_daily_call_cap": 3}, headers=admin.headers
    )
    ebay = budgeted_ebay(database, 1000, turn=5)
    with budgeted(app, 1000), providers_of(app, ebay=ebay):
        run = await create_run(client, admin, ["11"])
        await start(client, admin, run["id"])
        parked = await wait_for(client, admin, run["id"], waiting)
        assert parked["waiting_for"] == (
            "the daily cap of your organization (3 eBay calls a day, all taken today)"
        )
        resets_at = terms(1000).resets_at(utcnow())
        assert datetime.fromisoformat(parked["resumes_at"]) == resets_at
        assert parked["progress"]["products_searched"] == 3
        estimate = parked["estimate"]
        assert (estimate["ebay_calls"], estimate["org_calls_left_today"]) == (2, 0)
        assert estimate["fits_today"] is False
        cancelled = await client.post(f"/collection/runs/{run['id']}/cancel", headers=admin.headers)
        assert cancelled.status_code == 200
        await wait_for(client, admin, run["id"], finished)
    assert list((await calls_taken(database)).values()) == [3]


async def test_a_run_ahead_waits_for_its_turn_and_goes_on_after_the_others(
    client: httpx.AsyncClient, admin: Actor, app: FastAPI, database: Database
) -> None:
    """Organization B's run waits for calls too (made in the database; the test takes its
    calls): A's run takes its turn of 2, waits, and finishes once B has taken enough for
    A's turns to come round, though it only ever is 2 calls ahead."""
    other = await org_with_run(database, "B")
    ebay = budgeted_ebay(database, 10, turn=2)  # 10 calls for 5 + 10,000 wanted: short
    with providers_of(app, ebay=ebay):
        run = await create_run(client, admin, ["12"])
        await start(client, admin, run["id"])
        held = await wait_for(
            client, admin, run["id"], lambda r: (r["waiting_for"] or "").startswith("its turn")
        )
        assert held["waiting_for"] == (
            "its turn at the eBay budget: 2 organizations share what is left today (8 calls)"
        )
        assert held["progress"]["products_searched"] == 2
        for _ in range(4):  # B's calls let A's turns come round
            with charged_to(other):
                await ebay.budget.take()
        done = await wait_for(client, admin, run["id"], finished)
    assert done["status"] == "completed", done
    assert done["progress"]["products_searched"] == 5
    taken = await calls_taken(database)
    assert (sorted(taken.values()), taken[other]) == ([4, 5], 4)


async def test_a_run_alone_takes_what_it_needs(
    client: httpx.AsyncClient, admin: Actor, app: FastAPI, database: Database
) -> None:
    await org_with_run(database, "paused elsewhere", status=RunStatus.PAUSED)
    with providers_of(app, ebay=budgeted_ebay(database, 6, turn=1)):
        run = await create_run(client, admin, ["13"])
        await start(client, admin, run["id"])
        done = await wait_for(client, admin, run["id"], finished)
    assert (done["status"], done["progress"]["products_searched"]) == ("completed", 5)
