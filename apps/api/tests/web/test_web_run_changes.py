"""A finished run's page: its changes since another run (the sections, their further pages
with and without app.js, the runs to compare with, why there is nothing to compare, the
CSV), Run again, and how long the run took or has left."""

from __future__ import annotations

import html
import re
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import sqlalchemy as sa

from app.core.database import Database
from app.tables import CollectionRun, RunCategory, RunStatus
from app.web.run_changes import CHANGES_PER_PAGE
from tests.helpers.actors import Actor, Actors
from tests.helpers.browser import BrowserFactory
from tests.helpers.listings import Products, write_listings
from tests.helpers.scheduling import EPOCH, FakeClock
from tests.helpers.web import make_preset

FETCH = {"x-requested-with": "fetch"}  # what app.js sends with the parts it loads


def _listing(
    asin: str, seller: str, price: str = "10.00", item: str | None = None
) -> dict[str, Any]:
    return {
        "asin": asin,
        "item_id": item or f"{asin}-{seller}",
        "title": f"Listing of {asin}",
        "price": Decimal(price),
        "currency": "USD",
        "seller_username": seller,
        "seller_feedback_score": 10,
        "seller_feedback_percentage": Decimal("99.0"),
        "url": "https://www.ebay.com/itm/1",
    }


def _market(sellers: dict[str, int], prices: dict[str, str] | None = None) -> Products:
    """Each seller listing its first n products of P0, P1, ...; `prices` per item id."""
    products: Products = {}
    for seller, count in sellers.items():
        for p in range(count):
            asin = f"P{p:09d}"
            row = _listing(asin, seller)
            row["price"] = Decimal((prices or {}).get(row["item_id"], "10.00"))
            products.setdefault(asin, []).append(row)
    return products


async def _finished(
    client: httpx.AsyncClient,
    admin: Actor,
    database: Database,
    clock: FakeClock,
    products: Products,
    *,
    day: int,
    status: RunStatus = RunStatus.COMPLETED,
    **source: Any,
) -> str:
    """A run created on day `day` after EPOCH with these listings, finished an hour later."""
    clock.set(EPOCH + timedelta(days=day))
    body = source or {"category_ids": ["1", "2"]}
    created = await client.post(
        "/collection/runs", json={**body, "products_per_category": 7}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    await client.post(f"/collection/runs/{run_id}/cancel", headers=admin.headers)
    await write_listings(database, uuid.UUID(run_id), products)
    async with database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == uuid.UUID(run_id))
            .values(
                status=status,
                started_at=clock.now,
                finished_at=clock.now + timedelta(hours=1, minutes=5),
            )
        )
    return str(run_id)


def _section(page: str, name: str) -> str:
    start = page.index(f'id="changes-{name}"')
    end = page.find('<section class="change-section"', start + 1)
    return page[start : end if end > 0 else page.index("</section>", start)]


def _sellers_of(section: str) -> list[str]:
    return re.findall(r'<td class="seller">([^<]+)</td>', section)


def _text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


async def test_a_finished_run_shows_what_changed_since_the_previous_one(
    client: httpx.AsyncClient,
    admin: Actor,
    database: Database,
    clock: FakeClock,
    browser: BrowserFactory,
) -> None:
    before = _market({"anna": 3, "bert": 2, "carl": 1}, {"P000000000-bert": "20.00"})
    after = _market({"anna": 1, "bert": 2, "dora": 2}, {"P000000000-bert": "15.50"})
    first = await _finished(client, admin, database, clock, before, day=0)
    second = await _finished(client, admin, database, clock, after, day=1)
    signed_in = await browser(admin)

    page = await signed_in.get(f"/runs/{second}")
    assert page.status_code == 200
    words = _text(page.text)
    assert f'Compared with run <a href="/runs/{first}">' in page.text
    assert "of Fri 2027-01-15 12:00 UTC" in words  # the other run's date, not this one's
    assert "the previous completed run of these categories." in words
    assert "New sellers 1 Gone sellers 1 Movers 2 Unchanged 0 Price changes 1" in words
    assert _sellers_of(_section(page.text, "new_sellers")) == ["dora"]
    assert _sellers_of(_section(page.text, "gone_sellers")) == ["carl"]
    movers = _section(page.text, "movers")
    assert _sellers_of(movers) == ["anna", "bert"]  # anna fell 2 places, bert climbed 1
    assert '↓</span><span class="visually-hidden">down</span> 2' in movers
    assert "(\u22122)" in movers  # anna lists 2 products fewer
    prices = _text(_section(page.text, "price_changes"))
    assert "20.00 → 15.50 USD" in prices
    assert "\u22124.50 (\u221222.5%)" in prices
    assert f'href="/runs/{second}/export.csv?kind=changes" download' in page.text

    csv = await signed_in.get(f"/runs/{second}/export.csv?kind=changes")
    assert csv.status_code == 200
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.splitlines()
    assert lines[0].startswith("section,seller_username,rank")
    assert sorted(line.split(",")[0] for line in lines[1:]) == [
        "gone_sellers",
        "movers",
        "movers",
        "new_sellers",
        "price_changes",
    ]

    # compared the other way round, by choice: what is new there is gone here
    back = await signed_in.get(f"/runs/{first}?against={second}")
    assert _sellers_of(_section(back.text, "new_sellers")) == ["carl"]
    assert f'<option value="{second}" selected>' in back.text
    assert "the previous completed run" not in _text(back.text).split("Compare with")[0]


async def test_more_of_a_section_pages_with_and_without_app_js(
    client: httpx.AsyncClient,
    admin: Actor,
    database: Database,
    clock: FakeClock,
    browser: BrowserFactory,
) -> None:
    newcomers = {f"new-{i:02d}": 1 for i in range(CHANGES_PER_PAGE * 2 + 3)}
    await _finished(client, admin, database, clock, _market({"anna": 1}), day=0)
    second = await _finished(
        client, admin, database, clock, _market({"anna": 1, **newcomers}), day=1
    )
    signed_in = await browser(admin)
    page = (await signed_in.get(f"/runs/{second}")).text
    section = _section(page, "new_sellers")
    assert _sellers_of(section) == [f"new-{i:02d}" for i in range(CHANGES_PER_PAGE)]
    assert "1\u201310 of 23" in section  # (an en dash)
    more = re.search(r'href="([^"]+)" data-more="([^"]+)">Show more new sellers', section)
    assert more, section
    link, fragment = html.unescape(more.group(1)), html.unescape(more.group(2))
    assert link.startswith(f"/runs/{second}?section=new_sellers&cursor=")
    assert link.endswith("#changes-new_sellers")

    # without app.js: the run page with that section's next page
    next_page = await signed_in.get(link.split("#")[0])
    section = _section(next_page.text, "new_sellers")
    assert _sellers_of(section) == [f"new-{i:02d}" for i in range(10, 20)]
    assert "11\u201320 of 23" in section
    assert "← First new sellers" in section

    # with app.js: only the rows and the next link, to append
    loaded = await signed_in.get(fragment, headers=FETCH)
    assert loaded.status_code == 200
    assert loaded.text.lstrip().startswith('<div class="change-page">')
    assert _sellers_of(loaded.text) == [f"new-{i:02d}" for i in range(10, 20)]
    last = re.search(r'data-more="([^"]+)"', loaded.text)
    assert last
    end = await signed_in.get(html.unescape(last.group(1)), headers=FETCH)
    assert _sellers_of(end.text) == ["new-20", "new-21", "new-22"]
    assert "data-more" not in end.text

    bad = await signed_in.get(f"/runs/{second}/changes?section=winners&cursor=x", headers=FETCH)
    assert bad.status_code == 400
    assert "choose one of new_sellers" in bad.text
    tampered = await signed_in.get(f"/runs/{second}?section=new_sellers&cursor=abc")
    assert tampered.status_code == 400


async def test_when_there_is_nothing_to_compare_the_page_says_why(
    client: httpx.AsyncClient,
    actors: Actors,
    database: Database,
    clock: FakeClock,
    browser: BrowserFactory,
) -> None:
    admin, stranger = await actors.admin(), await actors.admin("Other")
    preset = await make_preset(client, admin)
    alone = await _finished(
        client, admin, database, clock, _market({"anna": 1}), day=0, preset_id=preset
    )
    other_categories = await _finished(
        client, admin, database, clock, _market({"anna": 1}), day=1, category_ids=["9"]
    )
    theirs = await _finished(client, stranger, database, clock, _market({"x": 1}), day=2)
    signed_in = await browser(admin)

    page = await signed_in.get(f"/runs/{alone}")
    assert page.status_code == 200
    words = _text(page.text)
    assert "Nothing to compare with yet: no earlier run of this preset completed." in words
    assert "No other finished run of these categories to compare with." in words
    assert "Download changes" not in page.text
    assert 'id="changes-new_sellers"' not in page.text

    for against, status, says in [
        (other_categories, 409, "collected other categories than this run"),
        (theirs, 404, "There is no such run in this organization to compare with"),
        ("not-a-run", 404, "There is no such run in this organization to compare with"),
        (alone, 409, "A run cannot be compared with itself"),
    ]:
        response = await signed_in.get(f"/runs/{alone}?against={against}")
        assert response.status_code == status, against
        assert says in _text(response.text)
        assert "Sellers" in response.text  # the rest of the page is there
    csv = await signed_in.get(f"/runs/{alone}/export.csv?kind=changes")
    assert csv.status_code == 200  # an explained page, not a CSV
    assert "text/html" in csv.headers["content-type"]
    assert "Nothing to compare with yet" in csv.text

    pending = await client.post(
        "/collection/runs", json={"preset_id": preset}, headers=admin.headers
    )
    active = await signed_in.get(f"/runs/{pending.json()['id']}")
    assert 'id="changes"' not in active.text  # a run still going has no changes yet


async def test_the_runs_to_compare_with_are_finished_runs_of_the_same_categories(
    client: httpx.AsyncClient,
    admin: Actor,
    database: Database,
    clock: FakeClock,
    browser: BrowserFactory,
) -> None:
    market = _market({"anna": 1})
    first = await _finished(client, admin, database, clock, market, day=0)
    failed = await _finished(client, admin, database, clock, market, day=1, status=RunStatus.FAILED)
    elsewhere = await _finished(client, admin, database, clock, market, day=2, category_ids=["3"])
    reordered = await _finished(
        client, admin, database, clock, market, day=3, category_ids=["2", "1"]
    )
    this = await _finished(client, admin, database, clock, market, day=4)
    page = (await (await browser(admin)).get(f"/runs/{this}")).text
    options = re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', page)
    assert [value for value, _ in options] == ["", reordered, failed, first]
    assert elsewhere not in page.split('id="changes"')[1].split("</form>")[0]
    assert options[2][1].endswith("· Sat 2027-01-16 12:00 UTC (failed)")
    # by default the previous completed run of the same list (in the same order)
    words = _text(page)
    assert f"Compared with run {await _name(client, admin, first)} of Fri 2027-01-15" in words


async def _name(client: httpx.AsyncClient, admin: Actor, run_id: str) -> str:
    run = (await client.get(f"/collection/runs/{run_id}", headers=admin.headers)).json()
    name: str = run["name"]
    return name


async def test_run_again_starts_the_same_preset_and_size(
    client: httpx.AsyncClient,
    actors: Actors,
    database: Database,
    clock: FakeClock,
    browser: BrowserFactory,
) -> None:
    admin = await actors.admin()
    viewer = await actors.member(admin, "viewer")
    preset = await make_preset(client, admin)
    done = await _finished(
        client, admin, database, clock, _market({"anna": 1}), day=0, preset_id=preset
    )
    signed_in = await browser(admin)
    page = await signed_in.get(f"/runs/{done}")
    assert f'action="/runs/{done}/again"' in page.text
    assert "Run again starts a new run of the same preset, 7 best sellers per category" in page.text

    again = await signed_in.submit(f"/runs/{done}/again", page=f"/runs/{done}")
    assert again.status_code == 303, again.text
    new_id = again.headers["location"].removeprefix("/runs/")
    new = (await client.get(f"/collection/runs/{new_id}", headers=admin.headers)).json()
    assert (new["preset_id"], new["products_per_category"]) == (preset, 7)
    assert new["status"] in ("running", "completed")
    shown = await signed_in.get(again.headers["location"])
    assert "again, with the same size." in _text(shown.text)

    # one collection at a time: the active run is named, nothing is created
    await client.post(f"/collection/runs/{new_id}/cancel", headers=admin.headers)
    blocker = await client.post(
        "/collection/runs", json={"preset_id": preset}, headers=admin.headers
    )
    refused = await signed_in.submit(f"/runs/{done}/again", page=f"/runs/{done}")
    assert refused.status_code == 409
    assert f"Not created: the run {blocker.json()['name']} is still pending" in _text(refused.text)
    assert "then run this one again." in _text(refused.text)
    await client.post(f"/collection/runs/{blocker.json()['id']}/cancel", headers=admin.headers)

    # the preset deleted since: its categories are run
    assert (await client.delete(f"/collection/presets/{preset}", headers=admin.headers)).is_success
    orphan = await signed_in.submit(f"/runs/{done}/again", page=f"/runs/{done}")
    assert orphan.status_code == 303
    rerun = (
        await client.get(
            f"/collection/runs/{orphan.headers['location'][6:]}", headers=admin.headers
        )
    ).json()
    assert (rerun["preset_id"], rerun["category_ids"]) == (None, ["172282", "541966"])
    await client.post(f"/collection/runs/{rerun['id']}/cancel", headers=admin.headers)

    # not before it has finished, and not for a viewer
    pending = await client.post(
        "/collection/runs", json={"category_ids": ["1"]}, headers=admin.headers
    )
    early = await signed_in.submit(f"/runs/{pending.json()['id']}/again")
    assert early.status_code == 409
    assert "run it again once it has finished" in early.text
    as_viewer = await browser(viewer)
    assert "/again" not in (await as_viewer.get(f"/runs/{done}")).text
    assert (await as_viewer.submit(f"/runs/{done}/again")).status_code == 403


async def test_the_run_page_says_how_long_the_run_took_or_has_left(
    client: httpx.AsyncClient,
    admin: Actor,
    database: Database,
    clock: FakeClock,
    browser: BrowserFactory,
) -> None:
    done = await _finished(client, admin, database, clock, _market({"anna": 1}), day=0)
    signed_in = await browser(admin)
    words = _text((await signed_in.get(f"/runs/{done}")).text)
    assert "Finished in 1 h 5 min." in words
    assert "Duration 1 h 5 min" in words

    clock.set(EPOCH + timedelta(days=1))
    created = await client.post(
        "/collection/runs", json={"category_ids": ["1"]}, headers=admin.headers
    )
    run_id = uuid.UUID(created.json()["id"])
    async with database.transaction() as session:  # 10 of 40 searched in 5 minutes
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == run_id)
            .values(
                status=RunStatus.PAUSED,
                phase="ebay",
                started_at=clock.now - timedelta(minutes=7),
                categories_done=1,
                products_found=40,
                products_searched=10,
            )
        )
    live = _text((await signed_in.get(f"/runs/{run_id}/live", headers=FETCH)).text)
    assert "Running for 7 min" in live
    assert "No estimate while the run is paused." in live
    assert "left" not in live
    listed = _text((await signed_in.get("/runs")).text)
    assert "going for 7 min" in listed
    assert "took 1 h 5 min" in listed


async def test_a_running_run_shows_about_how_long_it_has_left(
    client: httpx.AsyncClient,
    admin: Actor,
    database: Database,
    clock: FakeClock,
    browser: BrowserFactory,
) -> None:
    done = uuid.UUID(await _finished(client, admin, database, clock, _market({"a": 1}), day=0))
    async with database.transaction() as session:  # its eBay phase: 100 searches in 60 min
        await session.execute(
            sa.update(CollectionRun).where(CollectionRun.id == done).values(products_searched=100)
        )
        await session.execute(
            sa.update(RunCategory)
            .where(RunCategory.run_id == done)
            .values(done_at=EPOCH + timedelta(minutes=5))
        )
    clock.set(EPOCH + timedelta(days=1))
    created = await client.post(
        "/collection/runs", json={"category_ids": ["1", "2"]}, headers=admin.headers
    )
    run_id = uuid.UUID(created.json()["id"])
    async with database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == run_id)
            .values(
                status=RunStatus.RUNNING,
                phase="amazon",
                started_at=clock.now - timedelta(seconds=60),
                categories_done=1,
                products_found=10,
                lease_owner="elsewhere",  # (executed by another instance)
                lease_expires_at=clock.now + timedelta(days=365),
            )
        )
    # 1 category left at 60 s, then 20 products at 36 s each: 780 s
    signed_in = await browser(admin)
    signed_in.http.cookies.set("collection_zone", "Asia/Tokyo")
    live = _text((await signed_in.get(f"/runs/{run_id}/live", headers=FETCH)).text)
    assert "Running for 1 min · about 13 min left (until about Sat 2027-01-16 21:13 JST" in live
    assert "the eBay searches of the last completed run." in live
