"""The organization's settings: the expected eBay fee percentage, read by every member,
changed by admins, validated with a message that says what to fix, per organization."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers.actors import Actor, Actors


async def _fee(client: httpx.AsyncClient, actor: Actor) -> str:
    response = await client.get("/orgs/current/settings", headers=actor.headers)
    assert response.status_code == 200, response.text
    fee: str = response.json()["expected_fee_percent"]
    return fee


async def test_the_default_is_ebays_usual_final_value_fee_and_says_what_margins_include(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    admin = await actors.admin()
    viewer = await actors.member(admin, "viewer")
    response = await client.get("/orgs/current/settings", headers=viewer.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["expected_fee_percent"] == "13.25"
    assert "leaves out taxes" in body["margin_explained"]
    assert "not converted" in body["margin_explained"]


@pytest.mark.parametrize(
    ("sent", "stored"),
    [(12.5, "12.50"), ("7", "7.00"), ("13.255", "13.26"), (0, "0.00"), ("100", "100.00")],
)
async def test_an_admin_changes_the_fee_percent(
    client: httpx.AsyncClient, admin: Actor, sent: Any, stored: str
) -> None:
    response = await client.patch(
        "/orgs/current/settings", json={"expected_fee_percent": sent}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["expected_fee_percent"] == stored
    assert await _fee(client, admin) == stored


@pytest.mark.parametrize(
    ("sent", "message"),
    [
        (101, "less than or equal to 100"),
        (-1, "greater than or equal to 0"),
        ("100.01", "less than or equal to 100"),
        ("abc", "valid decimal"),
        ("NaN", "finite number"),
        (None, "may not be null"),
        (True, "decimal"),
    ],
)
async def test_a_fee_percent_out_of_range_is_422_naming_the_field(
    client: httpx.AsyncClient, admin: Actor, sent: Any, message: str
) -> None:
    response = await client.patch(
        "/orgs/current/settings", json={"expected_fee_percent": sent}, headers=admin.headers
    )
    assert response.status_code == 422, response.text
    assert message in response.text
    if sent is not None:
        (error,) = response.json()["detail"]
        assert error["loc"][-1] == "expected_fee_percent"
    assert await _fee(client, admin) == "13.25"


async def test_an_unknown_setting_is_422_and_nothing_changes(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    response = await client.patch(
        "/orgs/current/settings",
        json={"fee": 10, "expected_fee_percent": 10},
        headers=admin.headers,
    )
    assert response.status_code == 422
    assert await _fee(client, admin) == "13.25"
    empty = await client.patch("/orgs/current/settings", json={}, headers=admin.headers)
    assert empty.status_code == 200
    assert empty.json()["expected_fee_percent"] == "13.25"


@pytest.mark.parametrize("role", ["member", "viewer"])
async def test_only_admins_change_settings(
    client: httpx.AsyncClient, actors: Actors, role: str
) -> None:
    admin = await actors.admin()
    other = await actors.member(admin, role)
    response = await client.patch(
        "/orgs/current/settings", json={"expected_fee_percent": 5}, headers=other.headers
    )
    assert response.status_code == 403
    assert "org.settings" in response.json()["detail"]
    assert await _fee(client, admin) == "13.25"


async def test_each_organization_has_its_own_setting(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    first, second = await actors.admin("First"), await actors.admin("Second")
    changed = await client.patch(
        "/orgs/current/settings", json={"expected_fee_percent": 9}, headers=first.headers
    )
    assert changed.status_code == 200
    assert (await _fee(client, first), await _fee(client, second)) == ("9.00", "13.25")
    run = await client.post(
        "/collection/runs", json={"category_ids": ["1"]}, headers=second.headers
    )
    assert run.json()["fee_percent"] == "13.25"


async def test_an_admin_caps_the_organizations_ebay_calls_and_removes_the_cap(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    admin = await actors.admin("Capped")
    neighbour = await actors.admin("Neighbour")
    member = await actors.member(admin, "member")

    async def cap(actor: Actor) -> object:
        response = await client.get("/orgs/current/settings", headers=actor.headers)
        return response.json()["ebay_daily_call_cap"]

    assert await cap(admin) is None
    changed = await client.patch(
        "/orgs/current/settings", json={"ebay_daily_call_cap": 500}, headers=admin.headers
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["ebay_daily_call_cap"] == 500
    assert (await cap(member), await cap(neighbour)) == (500, None)  # its own, seen by members
    fee_only = await client.patch(
        "/orgs/current/settings", json={"expected_fee_percent": 10}, headers=admin.headers
    )
    assert fee_only.json()["ebay_daily_call_cap"] == 500  # left out: kept
    refused = await client.patch(
        "/orgs/current/settings", json={"ebay_daily_call_cap": None}, headers=member.headers
    )
    assert refused.status_code == 403
    removed = await client.patch(
        "/orgs/current/settings", json={"ebay_daily_call_cap": None}, headers=admin.headers
    )
    assert removed.status_code == 200
    assert await cap(admin) is None
