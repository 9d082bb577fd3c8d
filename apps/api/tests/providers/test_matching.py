"""The rule that keeps an eBay listing found by keywords: titles as words without case,
accents, punctuation or filler, the share of key words and the model they must have, and
the keywords searched for."""

from __future__ import annotations

import pytest

from app.providers.matching import key_tokens, search_keywords, title_matches, title_tokens
from tests.helpers.ebay import TITLE

# --- the matching rule -----------------------------------------------------------------------


def test_titles_are_tokenized_without_case_accents_punctuation_or_filler() -> None:
    assert title_tokens("NEW Café WE-512X, USB-C 5.3 w/ Case - Free Shipping!") == [
        "cafe",
        "we512x",
        "usbc",
        "53",
        "case",
    ]
    assert key_tokens(TITLE) == ["voltko", "wireless", "earbuds", "we512x"]
    # "a" is filler; at most eight key words, all before the first comma
    assert key_tokens("A B C D E F G H I J K, features") == list("bcdefghi")


@pytest.mark.parametrize(
    ("listing", "matches"),
    [
        (TITLE, True),
        ("VOLTKO Wireless Earbuds WE-512X", True),
        ("voltko we 512x wireless earbuds", True),  # the model spelt apart
        ("VOLTKO Earbuds WE-512X", True),  # 3 of 4 key words
        ("VOLTKO Wireless Earbuds WE-733", False),  # another model
        ("Wireless Earbuds", False),  # generic: 2 of 4
        ("WE-512X Replacement Ear Tips", False),  # 1 of 4
    ],
)
def test_keyword_listings_must_share_the_identifying_words_and_the_model(
    listing: str, matches: bool
) -> None:
    assert title_matches(TITLE, listing, threshold=0.6) is matches


def test_the_threshold_is_the_share_of_key_words() -> None:
    assert title_matches("Kordex Electric Kettle", "Kordex Kettle", threshold=0.6) is True
    assert title_matches("Kordex Electric Kettle", "Kordex Kettle", threshold=0.7) is False
    assert title_matches("Kordex Electric Kettle", "Kordex Kettle", threshold=0.0) is True


def test_search_keywords_are_the_head_of_the_title() -> None:
    assert search_keywords(TITLE) == "VOLTKO Wireless Earbuds WE-512X"
    assert search_keywords("Apple AirPods Pro (2nd Generation) with USB-C, Noise") == (
        "Apple AirPods Pro 2nd Generation USB-C"
    )
    assert len(search_keywords("Word " * 60)) <= 100
