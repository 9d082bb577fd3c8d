"""Amazon category (browse node) IDs: the one rule every entry point checks them by."""

from __future__ import annotations

from collections.abc import Iterable

MAX_CATEGORY_ID_DIGITS = 20
"""Longest ID accepted; Amazon's browse node IDs have at most 19 digits today."""


def parse_category_id(value: object) -> str:
    """A browse-node ID given as a JSON integer (or integral number) or a string of digits,
    as a string.

    Both forms meet the same rule (1 to MAX_CATEGORY_ID_DIGITS digits, not zero): an integer
    is checked as the digits it is written with, so a 30-digit number is refused like a
    30-digit string instead of being stored and left to overflow a column later.
    Raises ValueError with a message that says what is wrong.
    """
    if isinstance(value, bool):
        raise ValueError("must be a numeric category ID, got a boolean")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON does not tell 172282.0 from 172282, nor does its schema
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"must be a positive numeric category ID, got {value}")
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"must be a numeric category ID, got {type(value).__name__}")
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        raise ValueError(f"must be a numeric category ID (digits only), got {value[:40]!r}")
    if len(value) > MAX_CATEGORY_ID_DIGITS:
        raise ValueError(
            f"must have at most {MAX_CATEGORY_ID_DIGITS} digits, got {len(value)} digits"
        )
    if not value.strip("0"):
        raise ValueError(f"must be a positive numeric category ID, got {value!r}")
    return value


def invalid_category_id(category_ids: Iterable[object]) -> str | None:
    """Why the first unusable ID of a stored list is unusable, or None when all are fine.

    Presets saved before the rule above was complete may hold IDs it refuses; a run of
    them would fail in the database, so run creation asks this first.
    """
    for position, value in enumerate(category_ids, start=1):
        try:
            parse_category_id(value)
        except ValueError as exc:
            return f"category ID {position} ({str(value)[:40]!r}) {exc}"
    return None
