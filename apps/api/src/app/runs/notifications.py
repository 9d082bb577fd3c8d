"""Email to organization admins (SMTP), or a log line when no SMTP server is configured."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import uuid
from collections.abc import Coroutine
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa

from app.core.config import Settings
from app.core.database import SYSTEM, Database, acting_as
from app.tables import (
    CollectionRun,
    CollectionSchedule,
    Membership,
    Role,
    RunTrigger,
    User,
)

logger = logging.getLogger(__name__)


class Mailer:
    """Sends plain-text mail through `SMTP_URL`.

    `smtp://[user:password@]host[:port]` (STARTTLS when the server offers it),
    `smtps://...` (TLS from the start). Without SMTP_URL, messages are logged instead.
    """

    def __init__(self, settings: Settings) -> None:
        self.sender = settings.mail_from
        self._url = urlsplit(settings.smtp_url) if settings.smtp_url else None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def configured(self) -> bool:
        """Whether mail goes to an SMTP server (rather than the log)."""
        return self._url is not None

    async def send(self, recipients: list[str], subject: str, body: str) -> None:
        """Send one message; failures are logged, never raised (mail is best effort)."""
        if not recipients:
            return
        if self._url is None:
            logger.info(
                "mail (SMTP_URL not set) to %s: %s\n%s", ", ".join(recipients), subject, body
            )
            return
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(recipients)
        message["Subject"] = subject
        message.set_content(body)
        try:
            await asyncio.to_thread(self._deliver, message)
            logger.info("mailed %s: %s", ", ".join(recipients), subject)
        except (OSError, smtplib.SMTPException) as exc:
            logger.error("mail to %s failed: %s", ", ".join(recipients), exc)

    def send_soon(self, recipients: list[str], subject: str, body: str) -> None:
        """Send in the background (the caller does not wait for the SMTP server)."""
        self.later(self.send(recipients, subject, body))

    def later(self, work: Coroutine[object, object, None]) -> None:
        """Do mail work in the background, after the current request; `drain` awaits it."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for mail still being sent (at shutdown, and in tests)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _deliver(self, message: EmailMessage) -> None:
        assert self._url is not None
        host = self._url.hostname or "localhost"
        secure = self._url.scheme == "smtps"
        port = self._url.port or (465 if secure else 25)
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if secure:
            client = smtplib.SMTP_SSL(host, port, timeout=30, context=context)
        else:
            client = smtplib.SMTP(host, port, timeout=30)
        with client:
            if not secure:
                client.ehlo()
                if client.has_extn("starttls"):
                    client.starttls(context=context)
                    client.ehlo()
            if self._url.username:
                client.login(unquote(self._url.username), unquote(self._url.password or ""))
            client.send_message(message)


async def admin_emails(database: Database, org_id: uuid.UUID) -> list[str]:
    """Email addresses of the organization's admins."""
    async with database.read() as session:
        rows = await session.scalars(
            sa.select(User.email)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.org_id == org_id, Membership.role == Role.ADMIN)
            .order_by(User.email)
        )
        return list(rows)


async def notify_run_ended(database: Database, mailer: Mailer, run_id: uuid.UUID) -> None:
    """Mail the admins a summary of a scheduled run that ended, if its schedule asks for it.

    System work, whoever ended the run: a member who cancels it may not see its schedule.
    """
    with acting_as(SYSTEM):
        await _notify_run_ended(database, mailer, run_id)


async def _notify_run_ended(database: Database, mailer: Mailer, run_id: uuid.UUID) -> None:
    from app.runs.results import rank_sellers  # results imports nothing of ours back

    async with database.read() as session:
        row = (
            await session.execute(
                sa.select(CollectionRun, CollectionSchedule.notify_email)
                .join(CollectionSchedule, CollectionSchedule.id == CollectionRun.schedule_id)
                .where(CollectionRun.id == run_id, CollectionRun.trigger == RunTrigger.SCHEDULE)
            )
        ).first()
        if row is None or not row[1]:
            return
        run = row[0]
        top, _ = await rank_sellers(session, run, offset=0, limit=10, compared_with=None)
    lines = [
        f"Run: {run.name} ({run.id})",
        f"Status: {run.status.value}" + (f" - {run.error}" if run.error else ""),
        f"Categories: {run.categories_done}/{run.categories_total}",
        f"Products: {run.products_found} found, {run.products_searched} searched on eBay",
        f"Listings: {run.listings_found}; sellers: {run.sellers_found}",
    ]
    if top:
        lines += ["", "Top sellers (distinct products listed):"]
        lines += [f"  {s.rank:>2}. {s.username} ({s.products})" for s in top]
    recipients = await admin_emails(database, run.org_id)
    await mailer.send(recipients, f"Scheduled collection run {run.status.value}", "\n".join(lines))
