"""Digest mails: after a scheduled run completes, each subscribed member of its
organization gets the run's digest with their own preferences, in plain text (or a log
line when no SMTP server is configured). A member whose digest is empty gets no mail."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.database import SYSTEM, Database, acting_as
from app.runs.changes import SellerChange
from app.runs.notifications import Mailer
from app.tables import CollectionRun, RunStatus, RunTrigger, User
from app.watchlists.digest import Digest, Preferences, run_news
from app.watchlists.tables import DigestPreference

logger = logging.getLogger(__name__)


async def mail_digests(database: Database, mailer: Mailer, run_id: uuid.UUID) -> None:
    """Finish hook of the run executor: mail the digests of a completed scheduled run in
    the background (the run's task does not wait for the SMTP server)."""
    mailer.later(send_digests(database, mailer, run_id))


async def send_digests(database: Database, mailer: Mailer, run_id: uuid.UUID) -> None:
    """One digest mail per subscribed member whose digest has something to tell, if the
    run is a scheduled one that completed (manual and backfill runs send none). System
    work: it reads every subscriber's preferences. Failures are logged, never raised."""
    try:
        with acting_as(SYSTEM):
            await _send_digests(database, mailer, run_id)
    except Exception:
        logger.exception("run %s: digest mails failed", run_id, extra={"run_id": str(run_id)})


async def _send_digests(database: Database, mailer: Mailer, run_id: uuid.UUID) -> None:
    async with database.read() as session:
        run = await session.get(CollectionRun, run_id)
        if run is None or run.status is not RunStatus.COMPLETED:
            return
        if run.trigger is not RunTrigger.SCHEDULE:
            return
        members = await subscribers(session, run.org_id)
        if not members:
            return
        news = await run_news(session, run, top_n=max(wanted.top_n for _, wanted in members))
    for email, wanted in members:
        digest = news.digest_for(wanted)
        if digest.empty:
            logger.info(
                "run %s: nothing for %s's digest (%s); no mail",
                run.id,
                email,
                digest.note or "no section has news",
                extra={"run_id": str(run.id)},
            )
            continue
        await mailer.send([email], subject(digest), body(digest))


async def subscribers(session: AsyncSession, org_id: uuid.UUID) -> list[tuple[str, Preferences]]:
    """The email and preferences of each member of the organization subscribed to digests
    (preferences go with the membership, so every one is a member's)."""
    rows = await session.execute(
        sa.select(User.email, DigestPreference)
        .join(User, User.id == DigestPreference.user_id)
        .where(DigestPreference.org_id == org_id, DigestPreference.subscribed)
        .order_by(User.email)
    )
    return [
        (email, Preferences(row.subscribed, row.top_n, row.rank_threshold, row.updated_at))
        for email, row in rows
    ]


def subject(digest: Digest) -> str:
    """The mail's subject: the run (its name starts with its preset's)."""
    return f"Collection digest: {digest.run.name}"


def body(digest: Digest) -> str:
    """The digest as plain text: each section that has news, with ranks."""
    run, against, wanted = digest.run, digest.against, digest.preferences
    lines = [f"Run: {run.name}"]
    if run.finished_at is not None:
        lines.append(f"Completed: {run.finished_at:%Y-%m-%d %H:%M} UTC")
    if against is not None:
        since = against.finished_at or against.created_at
        lines.append(f"Compared with: {against.name}, completed {since:%Y-%m-%d %H:%M} UTC")
    sections: list[tuple[str, list[SellerChange], Callable[[SellerChange], str]]] = [
        (f"New sellers in the top {wanted.top_n}", digest.new_in_top, _ranked),
        ("Watched sellers that appeared", digest.watched_appeared, _ranked),
        ("Watched sellers that vanished", digest.watched_vanished, _vanished),
        (
            f"Watched sellers that moved {wanted.rank_threshold} places or more",
            digest.watched_moved,
            _moved,
        ),
    ]
    for title, items, line in sections:
        if items:
            lines += ["", f"{title} ({len(items)}):"]
            lines += [line(item) for item in items]
    lines += [
        "",
        f"The run's page: /runs/{run.id}",
        "You get this mail because you subscribed to digests; change what they tell you, "
        "or unsubscribe, on your account page (/account) or with PATCH /me/digest.",
    ]
    return "\n".join(lines)


def _products(count: int | None) -> str:
    return "1 product" if count == 1 else f"{count or 0} products"


def _ranked(change: SellerChange) -> str:
    return f"{change.rank:>4}. {change.username} ({_products(change.products)})"


def _vanished(change: SellerChange) -> str:
    return (
        f"      {change.username} (was #{change.against_rank}, "
        f"{_products(change.against_products)})"
    )


def _moved(change: SellerChange) -> str:
    places = change.rank_change or 0
    direction = f"up {places}" if places > 0 else f"down {-places}"
    return (
        f"{change.rank:>4}. {change.username} (was #{change.against_rank}: {direction}; "
        f"{_products(change.products)})"
    )
