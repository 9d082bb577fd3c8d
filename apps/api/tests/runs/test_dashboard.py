"""The home page's cards (app.runs.dashboard): for random runs of a preset, what its latest
completed run gained and lost is exactly the set differences of the sellers of its latest
two runs; the presets whose runs completed last come first; each organization sees its own."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.core.database import Database
from app.runs.dashboard import since_last_run
from tests.helpers.actors import Actors
from tests.helpers.directory import completed_run
from tests.helpers.listings import Products, later_products, random_products
from tests.helpers.web import make_preset

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def _sellers(products: Products) -> set[str]:
    return {row["seller_username"] for rows in products.values() for row in rows}


@pytest.mark.parametrize("seed", range(6))
async def test_gained_and_lost_are_the_set_differences_of_the_latest_two_runs(
    client: httpx.AsyncClient, actors: Actors, database: Database, seed: int
) -> None:
    admin = await actors.admin()
    assert admin.org_id is not None
    preset = await make_preset(client, admin, "Tools")
    rng = random.Random(seed)
    markets = [random_products(rng)]
    for _ in range(2):
        markets.append(later_products(markets[-1], rng))
    runs = []
    for day, products in enumerate(markets):
        runs.append(
            await completed_run(
                client, database, admin, products, T0 + timedelta(days=day), preset_id=preset
            )
        )
        async with database.read_sessions() as session:
            (card,) = await since_last_run(session, org_id=admin.org_id)
        latest = _sellers(products)
        assert (card.preset_id, card.latest_run_id) == (uuid.UUID(preset), runs[-1])
        assert card.sellers == len(latest)
        if day == 0:
            assert (card.previous_run_id, card.gained, card.lost) == (None, 0, 0)
            continue
        before = _sellers(markets[day - 1])
        assert card.previous_run_id == runs[-2]
        assert (card.gained, card.lost) == (len(latest - before), len(before - latest))


async def test_newest_presets_first_each_organization_its_own(
    client: httpx.AsyncClient, actors: Actors, database: Database
) -> None:
    admin, other = await actors.admin(), await actors.admin("Other")
    assert admin.org_id is not None
    assert other.org_id is not None
    rng = random.Random(7)
    names = ["Tools", "Toys", "Garden"]
    presets = [await make_preset(client, admin, name) for name in names]
    for day, preset in enumerate([presets[0], presets[2], presets[1]]):
        await completed_run(
            client,
            database,
            admin,
            random_products(rng),
            T0 + timedelta(days=day),
            preset_id=preset,
        )
    theirs = await make_preset(client, other, "Theirs")
    await completed_run(client, database, other, random_products(rng), T0, preset_id=theirs)
    async with database.read_sessions() as session:
        cards = await since_last_run(session, org_id=admin.org_id)
        assert [card.preset_name for card in cards] == ["Toys", "Garden", "Tools"]
        two = await since_last_run(session, org_id=admin.org_id, limit=2)
        assert [card.preset_name for card in two] == ["Toys", "Garden"]
        assert [c.preset_name for c in await since_last_run(session, org_id=other.org_id)] == [
            "Theirs"
        ]
