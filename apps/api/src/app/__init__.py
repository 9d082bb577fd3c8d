"""Collection API: Amazon best sellers by category, their eBay sellers, on a cron schedule."""

__version__ = "0.1.0"
