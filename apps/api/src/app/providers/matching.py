"""Whether an eBay listing found by keyword is the same item as an Amazon product.

A listing found by searching eBay for the product's UPC (`gtin=`) is the same item: eBay
matched it on the GTIN. A listing found by a keyword search is kept only when its title
passes `title_matches`:

1. Both titles are split into *tokens*: Unicode-normalized (NFKD, accents dropped),
   case-folded, runs of letters and digits; a run joined by `-`, `.` or `/` is one token
   (`WE-512X` → `we512x`, `USB-C` → `usbc`). Filler words (`new`, `brand`, `the`, `with`,
   `free shipping`, ... see `FILLER_WORDS`) are ignored.
2. The product's *key tokens* are the first `MAX_KEY_TOKENS` distinct tokens of its title
   up to the first comma, ` - ` or ` | `: Amazon titles lead with brand, product name and
   model and append features after a comma, which eBay's 80-character titles leave out.
3. The *similarity* is the share of key tokens that occur among the listing's tokens
   (0.0 to 1.0). The listing matches when similarity ≥ the threshold
   (`EBAY_TITLE_MATCH_THRESHOLD`, default 0.6) **and**, if the key tokens contain model
   numbers (tokens of two or more characters with a digit, such as `we512x` or `2nd`), at
   least one of them occurs in the listing title with spaces and punctuation removed (so
   `WE 512X` and `WE512X` both name model `WE-512X`).

This is a deliberately simple token-set rule rather than a fuzzy-string library: a fuzzy
"token set ratio" scores a short generic listing ("Wireless Earbuds") as a perfect match of
any long title containing those words, whereas a share of the product's identifying words
plus the model-number check rejects it, and every decision can be explained from the rule.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

MAX_KEY_TOKENS: Final = 8
FILLER_WORDS: Final = frozenset(
    {
        # English function words
        *("a", "an", "and", "as", "at", "by", "for", "from", "in", "of", "on", "or"),
        *("the", "to", "w", "with"),
        # listing boilerplate that says nothing about the item
        *("authentic", "brand", "fast", "free", "genuine", "new", "nib", "nwt", "original"),
        *("sealed", "ship", "shipping", "ships"),
    }
)
_TOKEN = re.compile(r"[a-z0-9]+(?:[-./][a-z0-9]+)*")
_SEPARATORS = re.compile(r"[-./]")
# Where the identifying head of a title ends: a comma, or " - ", " | ", or an en dash.
_HEAD_END = re.compile(r",| - | \| | \u2013 ")
_MAX_QUERY_CHARS = 100


def title_tokens(title: str) -> list[str]:
    """The title's significant tokens, in order (see the module docstring, step 1)."""
    text = unicodedata.normalize("NFKD", title)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    tokens = (_SEPARATORS.sub("", raw) for raw in _TOKEN.findall(text))
    return [token for token in tokens if token not in FILLER_WORDS]


def key_tokens(product_title: str) -> list[str]:
    """The tokens that identify a product: brand, name and model (step 2)."""
    head = _HEAD_END.split(product_title, maxsplit=1)[0]
    return list(dict.fromkeys(title_tokens(head)))[:MAX_KEY_TOKENS]


def title_similarity(product_title: str, listing_title: str) -> float:
    """The share of the product's key tokens that the listing title contains (step 3)."""
    key = key_tokens(product_title)
    if not key:
        return 0.0
    listed = set(title_tokens(listing_title))
    return sum(token in listed for token in key) / len(key)


def title_matches(product_title: str, listing_title: str, *, threshold: float) -> bool:
    """Whether a keyword-found listing is the product: similar enough, same model number."""
    if title_similarity(product_title, listing_title) < threshold:
        return False
    models = [t for t in key_tokens(product_title) if len(t) > 1 and any(c.isdigit() for c in t)]
    if not models:
        return True
    squashed = "".join(title_tokens(listing_title))
    return any(model in squashed for model in models)


def search_keywords(product_title: str) -> str:
    """The words to search eBay with: the identifying head of the title, as written.

    eBay requires every keyword of a query to match, so the features after the first
    comma (which listings rarely repeat) are left out.
    """
    head = _HEAD_END.split(product_title, maxsplit=1)[0]
    words: list[str] = []
    for raw in head.split():
        word = raw.strip("()[]{}\"'*,;:!?")
        if word and title_tokens(word):
            words.append(word)
        if len(words) == MAX_KEY_TOKENS:
            break
    query = " ".join(words) or product_title.strip()
    return query[:_MAX_QUERY_CHARS].rsplit(" ", 1)[0] if len(query) > _MAX_QUERY_CHARS else query
