"""Users with tokens, and organizations and memberships made through the public API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import httpx

from app.auth import issue_token
from app.core.config import Settings


@dataclass
class Actor:
    """A user with a token; `headers` are what their requests send."""

    user_id: uuid.UUID
    email: str
    token: str
    org_id: uuid.UUID | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **self.extra_headers}


class Actors:
    """Creates users, organizations and memberships through the public API."""

    def __init__(self, client: httpx.AsyncClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def user(self, email: str | None = None) -> Actor:
        """A user with a valid token (provisioned on their first request)."""
        user_id = uuid.uuid4()
        email = email or f"user-{user_id.hex[:8]}@example.com"
        token = issue_token(self.settings, user_id=user_id, email=email, ttl_seconds=3600)
        return Actor(user_id, email, token)

    async def admin(self, org_name: str = "Acme") -> Actor:
        """A user who created an organization (so is its admin)."""
        actor = self.user()
        response = await self.client.post("/orgs", json={"name": org_name}, headers=actor.headers)
        assert response.status_code == 201, response.text
        actor.org_id = uuid.UUID(response.json()["id"])
        return actor

    async def member(self, admin: Actor, role: str) -> Actor:
        """A user added to `admin`'s organization with `role`."""
        actor = self.user()
        await self.client.get("/me", headers=actor.headers)  # first sign-in provisions them
        response = await self.client.post(
            "/orgs/current/members",
            json={"email": actor.email, "role": role},
            headers=admin.headers,
        )
        assert response.status_code == 201, response.text
        actor.org_id = admin.org_id
        return actor
