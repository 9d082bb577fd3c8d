"""The watchlist (star, unstar, list) and digest preferences through the API: idempotent
stars, usernames refused with a message, pages, the bound on its size, where each seller
was last seen, and preferences per member and organization."""

from __future__ import annotations

import random
import uuid
from datetime import datetime

import httpx
import pytest
import sqlalchemy as sa

from app.core.database import Database
from app.tables import Membership
from app.watchlists import watchlist
from app.watchlists.tables import DigestPreference
from tests.helpers.actors import Actors
from tests.helpers.listings import complete, random_products, write_listings


async def test_star_is_idempotent_and_unstar_is_404_the_second_time(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    admin = await actors.admin()
    member = await actors.member(admin, "member")
    first = await client.put("/collection/watchlist/gadget_corner_7", headers=member.headers)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["username"] == "gadget_corner_7"
    assert body["starred_by"] == member.email
    assert body["last_seen"] is None
    starred_at = datetime.fromisoformat(body["starred_at"])
    assert starred_at.tzinfo is not None

    again = await client.put("/collection/watchlist/gadget_corner_7", headers=admin.headers)
    assert again.status_code == 200, again.text
    assert again.json() == body  # the first star's member and time stay

    listed = await client.get("/collection/watchlist", headers=admin.headers)
    assert listed.json() == {"items": [body], "next_cursor": None}

    gone = await client.delete("/collection/watchlist/gadget_corner_7", headers=admin.headers)
    assert gone.status_code == 204
    missing = await client.delete("/collection/watchlist/gadget_corner_7", headers=admin.headers)
    assert missing.status_code == 404
    assert missing.json()["detail"] == "seller gadget_corner_7 not found on the watchlist"
    assert (await client.get("/collection/watchlist", headers=admin.headers)).json()["items"] == []


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("x" * 101, "at most 100 characters"),
        ("two%20words", "must not contain spaces"),
        ("nul%00here", "must not contain a control character (U+0000 at position 4)"),
        ("zero%E2%80%8Bwidth", "must not contain a zero-width character"),
        ("bidi%E2%80%AEname", "must not contain a text-direction override"),
    ],
)
async def test_a_username_runs_could_not_store_is_422(
    client: httpx.AsyncClient, actors: Actors, path: str, message: str
) -> None:
    admin = await actors.admin()
    for method in ("PUT", "DELETE"):
        response = await client.request(
            method, f"/collection/watchlist/{path}", headers=admin.headers
        )
        assert response.status_code == 422, response.text
        assert message in response.json()["detail"][0]["msg"]
    assert (await client.get("/collection/watchlist", headers=admin.headers)).json()["items"] == []


async def test_usernames_are_kept_exactly(client: httpx.AsyncClient, actors: Actors) -> None:
    """eBay usernames as runs store them: dots, stars and other scripts are fine, and
    case matters (runs compare names exactly)."""
    admin = await actors.admin()
    for name in ("shop.usa.llc", "a*b", "Ünïcode-händler", "Shop.USA.LLC", "x" * 100):
        response = await client.put(f"/collection/watchlist/{name}", headers=admin.headers)
        assert response.status_code == 201, (name, response.text)
    listed = await client.get("/collection/watchlist", headers=admin.headers)
    assert len(listed.json()["items"]) == 5


async def test_viewers_read_the_watchlist_but_do_not_change_it(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    admin = await actors.admin()
    viewer = await actors.member(admin, "viewer")
    await client.put("/collection/watchlist/watched", headers=admin.headers)
    for method in ("PUT", "DELETE"):
        response = await client.request(
            method, "/collection/watchlist/watched", headers=viewer.headers
        )
        assert response.status_code == 403
        assert "collection.run" in response.json()["detail"]
    listed = await client.get("/collection/watchlist", headers=viewer.headers)
    assert [item["username"] for item in listed.json()["items"]] == ["watched"]


async def test_pages_come_newest_star_first(client: httpx.AsyncClient, actors: Actors) -> None:
    admin = await actors.admin()
    names = [f"seller-{i}" for i in range(5)]
    for name in names:
        assert (
            await client.put(f"/collection/watchlist/{name}", headers=admin.headers)
        ).status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (
            await client.get("/collection/watchlist", params=params, headers=admin.headers)
        ).json()
        seen += [item["username"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == names[::-1]


async def test_the_watchlist_is_bounded(
    client: httpx.AsyncClient, actors: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watchlist, "MAX_WATCHED", 2)
    admin = await actors.admin()
    for name in ("a-seller", "b-seller"):
        await client.put(f"/collection/watchlist/{name}", headers=admin.headers)
    full = await client.put("/collection/watchlist/c-seller", headers=admin.headers)
    assert full.status_code == 409
    assert "holds 2 sellers, the most it may: unstar one" in full.json()["detail"]
    again = await client.put("/collection/watchlist/a-seller", headers=admin.headers)
    assert again.status_code == 200  # starring a watched seller still answers
    other = await actors.admin("Other")  # the bound is per organization
    assert (
        await client.put("/collection/watchlist/c-seller", headers=other.headers)
    ).status_code == 201


async def test_last_seen_is_the_latest_completed_run_that_saw_the_seller(
    client: httpx.AsyncClient, actors: Actors, database: Database
) -> None:
    admin = await actors.admin()
    products = random_products(random.Random(3))
    names = sorted({row["seller_username"] for rows in products.values() for row in rows})
    runs = []
    for complete_it in (True, True, False):
        created = await client.post(
            "/collection/runs", json={"category_ids": ["1"]}, headers=admin.headers
        )
        run_id = created.json()["id"]
        await client.post(f"/collection/runs/{run_id}/cancel", headers=admin.headers)
        await write_listings(database, uuid.UUID(run_id), products)
        if complete_it:
            await complete(database, uuid.UUID(run_id))
        runs.append(run_id)
    await client.put(f"/collection/watchlist/{names[0]}", headers=admin.headers)
    await client.put("/collection/watchlist/nobody-saw-me", headers=admin.headers)

    items = {
        item["username"]: item
        for item in (await client.get("/collection/watchlist", headers=admin.headers)).json()[
            "items"
        ]
    }
    seen = items[names[0]]["last_seen"]
    assert seen["run_id"] == runs[1]  # the newest completed one, not the cancelled third
    sellers = (
        await client.get(f"/collection/runs/{runs[1]}/sellers", headers=admin.headers)
    ).json()["items"]
    (figures,) = [s for s in sellers if s["username"] == names[0]]
    assert (seen["rank"], seen["products"], seen["listings"]) == (
        figures["rank"],
        figures["products"],
        figures["listings"],
    )
    assert items["nobody-saw-me"]["last_seen"] is None


async def test_another_organizations_watchlist_is_its_own(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    a, b = await actors.admin("A"), await actors.admin("B")
    await client.put("/collection/watchlist/shared-name", headers=a.headers)
    assert (await client.get("/collection/watchlist", headers=b.headers)).json()["items"] == []
    assert (
        await client.delete("/collection/watchlist/shared-name", headers=b.headers)
    ).status_code == 404
    assert (
        await client.put("/collection/watchlist/shared-name", headers=b.headers)
    ).status_code == 201
    items = (await client.get("/collection/watchlist", headers=a.headers)).json()["items"]
    assert [(i["username"], i["starred_by"]) for i in items] == [("shared-name", a.email)]


# --- digest preferences ---------------------------------------------------------------------


async def test_preferences_default_to_not_subscribed_and_change_field_by_field(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    admin = await actors.admin()
    defaults = (await client.get("/me/digest", headers=admin.headers)).json()
    assert defaults == {"subscribed": False, "top_n": 10, "rank_threshold": 5, "updated_at": None}

    on = await client.patch("/me/digest", json={"subscribed": True}, headers=admin.headers)
    assert on.status_code == 200, on.text
    assert on.json()["subscribed"] is True
    assert (on.json()["top_n"], on.json()["rank_threshold"]) == (10, 5)
    assert on.json()["updated_at"] is not None
    changed = await client.patch(
        "/me/digest", json={"top_n": 25, "rank_threshold": 1}, headers=admin.headers
    )
    assert changed.json()["subscribed"] is True  # left out: kept
    assert (await client.get("/me/digest", headers=admin.headers)).json() == changed.json()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"top_n": 0}, "top_n", "greater than or equal to 1"),
        ({"top_n": 101}, "top_n", "less than or equal to 100"),
        ({"rank_threshold": 1001}, "rank_threshold", "less than or equal to 1000"),
        ({"rank_threshold": "many"}, "rank_threshold", "valid integer"),
        ({"subscribed": "perhaps"}, "subscribed", "valid boolean"),
        ({"top_n": None}, None, "top_n may not be null; leave a field out to keep it"),
        ({"top": 3}, "top", "Extra inputs are not permitted"),
    ],
)
async def test_bad_preferences_are_422_naming_the_field(
    client: httpx.AsyncClient, actors: Actors, body: dict[str, object], field: str, message: str
) -> None:
    admin = await actors.admin()
    response = await client.patch("/me/digest", json=body, headers=admin.headers)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert message in error["msg"]
    if field is not None:
        assert error["loc"][-1] == field
    assert (await client.get("/me/digest", headers=admin.headers)).json()["updated_at"] is None


async def test_preferences_are_per_member_and_organization(
    client: httpx.AsyncClient, actors: Actors, database: Database
) -> None:
    a, b = await actors.admin("A"), await actors.admin("B")
    member = await actors.member(a, "viewer")
    joined = await client.post(
        "/orgs/current/members", json={"email": member.email, "role": "member"}, headers=b.headers
    )
    assert joined.status_code == 201
    in_a = {**member.headers, "X-Org-Id": str(a.org_id)}
    in_b = {**member.headers, "X-Org-Id": str(b.org_id)}
    await client.patch("/me/digest", json={"subscribed": True, "top_n": 3}, headers=in_a)
    assert (await client.get("/me/digest", headers=in_b)).json()["subscribed"] is False
    assert (await client.get("/me/digest", headers=a.headers)).json()["subscribed"] is False
    assert (await client.get("/me/digest", headers=in_a)).json()["top_n"] == 3

    # removing the member from A removes their preferences there (with the membership)
    removed = await client.delete(f"/orgs/current/members/{member.user_id}", headers=a.headers)
    assert removed.status_code == 204
    async with database.read() as session:
        kept = (await session.execute(sa.select(DigestPreference.org_id))).scalars().all()
        assert a.org_id not in kept
        assert (
            await session.scalar(
                sa.select(sa.func.count()).where(
                    Membership.org_id == a.org_id, Membership.user_id == member.user_id
                )
            )
            == 0
        )
