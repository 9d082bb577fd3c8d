"""The service's settings in tests: the JWT secret of the shared app, the variables no
test inherits from the shell, and settings built from keyword arguments only."""

from __future__ import annotations

from typing import Any

from app.core.config import Settings

TEST_SECRET = "test-secret-" + "x" * 40


SERVICE_VARIABLES = frozenset(
    {name.upper() for name in Settings.model_fields}
    | {"COLLECTION_API_URL", "COLLECTION_API_TOKEN", "COLLECTION_API_ORG"}
)


def make_settings(**overrides: Any) -> Settings:
    """Settings from keyword arguments, over the environment the test set (the shell's
    service settings are removed for the session) and never a .env file."""
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]
