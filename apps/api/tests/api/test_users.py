"""Provisioning a user from their first token."""

from __future__ import annotations

import uuid

import pytest

from app.core.database import Database
from app.users import EmailTakenError, provision_user


async def test_an_email_of_another_user_is_taken_and_the_same_user_s_is_not(
    database: Database,
) -> None:
    user_id = uuid.uuid4()
    for _ in range(2):  # a second first-request of the same user finds its row: no conflict
        async with database.transaction() as session:
            await provision_user(session, user_id=user_id, email="taken@example.com")
    with pytest.raises(EmailTakenError, match="already belongs to another user"):
        async with database.transaction() as session:
            await provision_user(session, user_id=uuid.uuid4(), email="taken@example.com")
