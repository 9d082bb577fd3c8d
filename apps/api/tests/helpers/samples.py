"""The offline sample market in tests: forgetting what its caches hold, so a test can see
that a second computation gives the same market as the first."""

from __future__ import annotations

from app.providers import sample_market
from app.providers.sample import sample_best_sellers, sample_product


def forget_sample_market() -> None:
    """Empty the sample providers' caches: the next call computes the market afresh."""
    sample_product.cache_clear()
    sample_best_sellers.cache_clear()
    sample_market.best_seller_places.cache_clear()
