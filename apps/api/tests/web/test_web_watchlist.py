"""The watchlist in the web UI: stars beside a run's sellers, the watchlist page and its
form, the digest on a completed run's page, and digest preferences on the account page."""

from __future__ import annotations

import random
import re
import uuid

import httpx

from app.core.database import Database
from tests.helpers.actors import Actor, Actors
from tests.helpers.browser import BrowserFactory
from tests.helpers.listings import complete, later_products, random_products, write_listings


async def _two_runs(
    client: httpx.AsyncClient, admin: Actor, database: Database, seed: int = 0
) -> tuple[str, str]:
    """Two completed runs of the same categories whose markets differ; their ids."""
    rng = random.Random(seed)
    before_products = random_products(rng)
    runs = []
    for products in (before_products, later_products(before_products, rng)):
        created = await client.post(
            "/collection/runs", json={"category_ids": ["1", "2"]}, headers=admin.headers
        )
        run_id = created.json()["id"]
        await client.post(f"/collection/runs/{run_id}/cancel", headers=admin.headers)
        await write_listings(database, uuid.UUID(run_id), products)
        await complete(database, uuid.UUID(run_id))
        runs.append(run_id)
    return runs[0], runs[1]


def _sellers(html: str) -> list[str]:
    return re.findall(r'<td class="seller">([^<]+)</td>', html)


def _star_button(html: str, username: str) -> str:
    """The star button of `username` on a page."""
    match = re.search(rf'<button [^>]*aria-label="Watch {re.escape(username)}"[^>]*>', html)
    assert match, f"no star for {username}"
    return match.group(0)


async def test_a_star_beside_a_seller_watches_it_and_a_second_press_stops(
    client: httpx.AsyncClient, actors: Actors, database: Database, browser: BrowserFactory
) -> None:
    admin = await actors.admin()
    member = await actors.member(admin, "member")
    _, run_id = await _two_runs(client, admin, database)
    page = await browser(member)
    run_page = f"/runs/{run_id}"
    first = _sellers((await page.get(run_page)).text)[0]
    assert 'aria-pressed="false"' in _star_button((await page.get(run_page)).text, first)

    back = f"{run_page}?sort=products#sellers"
    starred = await page.submit("/watchlist/star", {"username": first, "next": back}, page=run_page)
    assert starred.status_code == 303
    assert starred.headers["location"] == back
    after = (await page.get(run_page)).text
    assert f"Watching {first}." in after
    assert 'aria-pressed="true"' in _star_button(after, first)
    api = (await client.get("/collection/watchlist", headers=admin.headers)).json()["items"]
    assert [(i["username"], i["starred_by"]) for i in api] == [(first, member.email)]
    listed = (await page.get("/watchlist")).text
    assert f'<td class="seller">{first}</td>' in listed
    assert member.email in listed

    stopped = await page.submit("/watchlist/unstar", {"username": first, "next": back})
    assert stopped.status_code == 303
    assert f"No longer watching {first}." in (await page.get(run_page)).text
    assert (await client.get("/collection/watchlist", headers=admin.headers)).json()["items"] == []


async def test_viewers_see_stars_but_cannot_press_them(
    client: httpx.AsyncClient, actors: Actors, database: Database, browser: BrowserFactory
) -> None:
    admin = await actors.admin()
    viewer = await actors.member(admin, "viewer")
    _, run_id = await _two_runs(client, admin, database)
    page = await browser(viewer)
    first = _sellers((await page.get(f"/runs/{run_id}")).text)[0]
    await client.put(f"/collection/watchlist/{first}", headers=admin.headers)
    html = (await page.get(f"/runs/{run_id}")).text
    assert 'action="/watchlist/star"' not in html
    assert 'action="/watchlist/unstar"' not in html
    assert 'class="star on" role="img" aria-label="Watched"' in html
    listed = (await page.get("/watchlist")).text
    assert "Watch a seller" not in listed  # no form
    refused = await page.submit("/watchlist/star", {"username": "x-seller"}, page="/watchlist")
    assert refused.status_code == 403
    assert "collection.run" in refused.text


async def test_the_watchlist_form_shows_what_to_fix_at_the_field(
    client: httpx.AsyncClient, actors: Actors, browser: BrowserFactory
) -> None:
    admin = await actors.admin()
    page = await browser(admin)
    bad = await page.submit("/watchlist/star", {"username": "two words"}, page="/watchlist")
    assert bad.status_code == 400
    assert (
        '<p class="field-error" id="username-error" >The seller&#39;s username must not '
        "contain spaces: eBay usernames have none, got &#39;two words&#39;.</p>"
    ) in bad.text
    assert 'value="two words"' in bad.text  # what was typed is kept
    good = await page.submit(
        "/watchlist/star", {"username": "  far_away_shop ", "next": "https://evil.example/"}
    )
    assert good.status_code == 303
    assert good.headers["location"] == "/watchlist"  # another site is never a target
    listed = (await page.get("/watchlist")).text
    assert "Watching far_away_shop." in listed
    assert "no completed run yet" in listed
    again = await page.submit("/watchlist/star", {"username": "far_away_shop"})
    assert "far_away_shop was on the watchlist already." in (await page.get("/watchlist")).text
    assert again.status_code == 303


async def test_a_completed_runs_page_shows_the_members_digest(
    client: httpx.AsyncClient, actors: Actors, database: Database, browser: BrowserFactory
) -> None:
    admin = await actors.admin()
    before, after = await _two_runs(client, admin, database)
    changes = (await client.get(f"/collection/runs/{after}/changes", headers=admin.headers)).json()
    new = changes["new_sellers"]["items"]
    assert new, "the market drifted too little"
    await client.put(f"/collection/watchlist/{new[0]['username']}", headers=admin.headers)
    page = await browser(admin)

    html = (await page.get(f"/runs/{after}")).text
    assert "Digest for you" in html
    digest = html[html.index('id="digest"') : html.index('id="sellers"')]
    assert f'href="/runs/{before}"' in digest
    assert "Watched: appeared" in digest
    assert f"#{new[0]['rank']}" in digest
    assert new[0]["username"] in digest
    assert "New in your top 10" in digest or all(s["rank"] > 10 for s in new)

    first = (await page.get(f"/runs/{before}")).text
    assert "Nothing to compare with: no earlier completed run of the same categories" in first


async def test_digest_preferences_on_the_account_page(
    client: httpx.AsyncClient, actors: Actors, browser: BrowserFactory
) -> None:
    admin = await actors.admin()
    page = await browser(admin)
    account = (await page.get("/account")).text
    assert "Digest in Acme" in account
    assert 'id="subscribed" name="subscribed" type="checkbox" >' in account  # opt-in
    assert 'id="top_n" name="top_n" type="number" min="1" max="100" value="10"' in account

    bad = await page.submit(
        "/account/digest",
        {"subscribed": "on", "top_n": "0", "rank_threshold": "3"},
        page="/account",
    )
    assert bad.status_code == 400
    assert '<p class="field-error" id="top_n-error" >use a number of at least 1</p>' in bad.text
    assert 'value="0"' in bad.text
    assert (await client.get("/me/digest", headers=admin.headers)).json()["updated_at"] is None

    saved = await page.submit(
        "/account/digest",
        {"subscribed": "on", "top_n": "20", "rank_threshold": "3"},
        page="/account",
    )
    assert saved.status_code == 303
    shown = (await page.get("/account")).text
    assert "Digest saved: after each scheduled run of Acme" in shown
    assert 'type="checkbox" checked>' in shown
    prefs = (await client.get("/me/digest", headers=admin.headers)).json()
    assert (prefs["subscribed"], prefs["top_n"], prefs["rank_threshold"]) == (True, 20, 3)

    off = await page.submit(
        "/account/digest", {"top_n": "20", "rank_threshold": "3"}, page="/account"
    )
    assert off.status_code == 303
    assert (await client.get("/me/digest", headers=admin.headers)).json()["subscribed"] is False
