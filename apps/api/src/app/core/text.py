"""The text rule: which characters no name, address or log line may carry as they are."""

from __future__ import annotations

import re

# No C0/C1 control characters (NUL is an error on PostgreSQL and lands raw in a page title
# on SQLite), no line or paragraph separators, no lone surrogates (they cannot be stored as
# UTF-8), and none of the invisible characters that make text read other than it is
# stored: bidi marks, overrides and isolates, zero-width spaces and joiners, the word
# joiner and invisible operators, the byte-order mark.
REFUSED_CHARACTERS: dict[tuple[int, int], str] = {
    (0x0000, 0x001F): "a control character",
    (0x007F, 0x009F): "a control character",
    (0x00AD, 0x00AD): "an invisible soft hyphen",
    (0x061C, 0x061C): "a text-direction mark",
    (0x180E, 0x180E): "an invisible separator",
    (0x200B, 0x200D): "a zero-width character",
    (0x200E, 0x200F): "a text-direction mark",
    (0x2028, 0x2029): "a line or paragraph separator",
    (0x202A, 0x202E): "a text-direction override",
    (0x2060, 0x2064): "an invisible character",
    (0x2066, 0x2069): "a text-direction isolate",
    (0xD800, 0xDFFF): "a lone surrogate (not valid Unicode text)",
    (0xFEFF, 0xFEFF): "an invisible byte-order mark",
    (0xFFFE, 0xFFFF): "a non-character",
}
_SURROGATES = (0xD800, 0xDFFF)
REFUSED_CLASS = "".join(
    rf"\u{low:04x}" if low == high else rf"\u{low:04x}-\u{high:04x}"
    for low, high in REFUSED_CHARACTERS
    if (low, high) != _SURROGATES
)
"""The refused characters as the inside of a regular-expression class, for the OpenAPI
patterns: all but the lone surrogates, which no UTF-8 text can carry and which regular
expression engines over Unicode scalar values (the Rust one) refuse to name."""
_REFUSED = re.compile(f"[{REFUSED_CLASS}\\ud800-\\udfff]")


def refused_character(value: str) -> str | None:
    """Why `value` cannot be kept as text (its first refused character), or None."""
    found = _REFUSED.search(value)
    if found is None:
        return None
    code = ord(found.group())
    what = next(name for (low, high), name in REFUSED_CHARACTERS.items() if low <= code <= high)
    return f"must not contain {what} (U+{code:04X} at position {found.start() + 1})"


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_refused(value: str) -> str:
    """`value` with each refused character written as an escape (`\\n` becomes `\\x0a`):
    what a log line shows of text it did not choose, so the text cannot start a line or
    hide part of one."""
    return _REFUSED.sub(_escaped, value)
