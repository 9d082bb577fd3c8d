"""Request and response bodies of the watchlist and digest endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field, WithJsonSchema

from app.core.text import REFUSED_CLASS, refused_character
from app.models import PartialUpdate, ResponseModel
from app.runs.models import SellerChangeResponse
from app.watchlists.tables import RANK_THRESHOLD_RANGE, TOP_N_RANGE, USERNAME_LENGTH


def seller_username(value: str) -> str:
    """`value` as an eBay username as runs store it: 1 to 100 characters under the text
    rule, without spaces (eBay usernames have none)."""
    if reason := refused_character(value):
        raise ValueError(reason)
    if not value:
        raise ValueError("must name a seller: give its eBay username")
    if len(value) > USERNAME_LENGTH:
        raise ValueError(
            f"must be at most {USERNAME_LENGTH} characters (an eBay username), got {len(value)}"
        )
    if any(character.isspace() for character in value):
        raise ValueError(f"must not contain spaces: eBay usernames have none, got {value!r}")
    return value


SellerUsername = Annotated[
    str,
    AfterValidator(seller_username),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": USERNAME_LENGTH,
            "pattern": rf"^[^{REFUSED_CLASS}\s]+$",
            "examples": ["gadget_corner_7"],
        }
    ),
]


class LastSeenResponse(ResponseModel):
    run_id: uuid.UUID
    run_name: str
    created_at: datetime = Field(description="When that run was created.")
    rank: int | None
    products: int = Field(description="Distinct collected products it listed in that run.")
    listings: int


class WatchedSellerResponse(ResponseModel):
    username: str
    starred_by: str | None = Field(
        description="Email of the member who starred it; null once that user is gone."
    )
    starred_at: datetime
    last_seen: LastSeenResponse | None = Field(
        description="The seller in the latest completed run that saw it (results kept); "
        "null when no such run did."
    )


class DigestPreferencesResponse(ResponseModel):
    subscribed: bool = Field(
        description="Mail the digest after each completed scheduled run. Off until the "
        "member turns it on (opt-in)."
    )
    top_n: int = Field(description="New sellers ranked this high or higher are news.")
    rank_threshold: int = Field(
        description="A watched seller moving this many places or more (up or down) is news."
    )
    updated_at: datetime | None = Field(description="null while the defaults apply.")


class DigestPreferencesUpdate(PartialUpdate):
    """A partial update: fields left out keep their value; null is not a value."""

    subscribed: bool | None = Field(default=None, examples=[True])
    top_n: int | None = Field(
        default=None,
        ge=TOP_N_RANGE[0],
        le=TOP_N_RANGE[1],
        description="New sellers ranked 1 to `top_n` are news (1-100; default 10).",
        examples=[20],
    )
    rank_threshold: int | None = Field(
        default=None,
        ge=RANK_THRESHOLD_RANGE[0],
        le=RANK_THRESHOLD_RANGE[1],
        description="Places a watched seller must move to be news (1-1000; default 5).",
        examples=[3],
    )


class ComparedRun(ResponseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    finished_at: datetime | None


class RunDigest(ResponseModel):
    """A run's digest with the caller's preferences: what changed since the previous
    completed run of its preset that they want to hear about."""

    run_id: uuid.UUID
    run_name: str
    compared_with: ComparedRun | None = Field(
        description="The previous completed run of the same preset (of the same category "
        "list for a run of one); null when there is none, and then every section is empty."
    )
    note: str | None = Field(
        description="Why there is nothing to compare with; null when `compared_with` is set."
    )
    preferences: DigestPreferencesResponse = Field(description="The caller's, as applied.")
    new_in_top: list[SellerChangeResponse] = Field(
        description="Sellers new since `compared_with` ranked within `top_n`, by rank."
    )
    watched_appeared: list[SellerChangeResponse] = Field(
        description="Watched sellers in this run but not in `compared_with`, by rank."
    )
    watched_vanished: list[SellerChangeResponse] = Field(
        description="Watched sellers in `compared_with` but not in this run, by their rank there."
    )
    watched_moved: list[SellerChangeResponse] = Field(
        description="Watched sellers in both runs whose rank changed by `rank_threshold` places "
        "or more, up or down (a change of products alone is not a move); most places first."
    )
