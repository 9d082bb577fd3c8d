"""A real SMTP server on localhost (aiosmtpd) that keeps what it receives, and a mailer
that sends to it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from app.core.config import Settings
from app.runs.notifications import Mailer
from tests.helpers.processes import free_port
from tests.helpers.settings import make_settings


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        message["X-Rcpt-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, str]]:
    """A local SMTP server while the block runs: its inbox and its `SMTP_URL`."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, f"smtp://127.0.0.1:{port}"
    finally:
        controller.stop()


def smtp_mailer(settings: Settings, url: str) -> Mailer:
    """A mailer of these settings that sends to `url`."""
    return Mailer(make_settings(**{**settings.model_dump(), "smtp_url": url}))
