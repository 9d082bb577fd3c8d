"""The Changes section of a finished run's page: what changed since another run of the same
categories (the API's comparison, `app.runs.changes`), a page of each section with a link
to the next, the runs it can be compared with, and why there is nothing to show when there
is not.

The run page (`web/runs.py`) builds the section with `changes_section`; its further pages
come as fragments (`section_page`) that app.js appends in place, or, without the script,
as the whole page with that section's next page.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import status
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import PageParams, decode_offset, encode_offset
from app.errors import NotFoundError
from app.runs import changes
from app.runs.lifecycle import RunFilter, RunLifecycle
from app.runs.results import ResultsPurgedError, previous_completed_run
from app.tables import CollectionRun, RunStatus
from app.web.errors import WebError

CHANGES_PER_PAGE = 10
FINISHED = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)
MAX_CHOICES = 200
"""Runs looked at for the "compare with" list: the organization's latest finished ones."""

TITLES: dict[changes.Section, str] = {
    "new_sellers": "New sellers",
    "gone_sellers": "Gone sellers",
    "movers": "Movers",
    "price_changes": "Price changes",
}
EMPTY: dict[changes.Section, str] = {
    "new_sellers": "No seller is new: every seller of this run was in the other one too.",
    "gone_sellers": "No seller is gone: every seller of the other run is in this one too.",
    "movers": "No seller in both runs changed rank or product count.",
    "price_changes": "No listing in both runs changed price.",
}


@dataclass(slots=True)
class SectionPage:
    """One page of a section: its items, where they start, and the cursor of the next."""

    name: changes.Section
    items: list[Any]
    offset: int
    total: int | None
    next_cursor: str | None

    @property
    def title(self) -> str:
        return TITLES[self.name]

    @property
    def empty(self) -> str:
        return EMPTY[self.name]


@dataclass(slots=True)
class ChangesView:
    """What the Changes section shows; `problem` when there is nothing to compare."""

    shown: bool = False
    against: CollectionRun | None = None
    against_param: str = ""
    summary: changes.Summary | None = None
    sections: list[SectionPage] = field(default_factory=list)
    choices: list[CollectionRun] = field(default_factory=list)
    has_previous: bool = False
    """Whether there is a previous completed run to compare with by default."""
    problem: str | None = None
    status_code: int = status.HTTP_200_OK


def can_compare(row: CollectionRun) -> bool:
    """Whether the run page has a Changes section: finished, with its results kept."""
    return row.status in FINISHED and row.results_purged_at is None


async def comparable_runs(
    session: AsyncSession, runs: RunLifecycle, row: CollectionRun
) -> list[CollectionRun]:
    """The organization's other finished runs of the same categories with their results
    kept, newest first (among its latest MAX_CHOICES finished runs)."""
    candidates, _ = await runs.list_runs(
        session,
        org_id=row.org_id,
        page=PageParams(limit=MAX_CHOICES),
        only=RunFilter(statuses=FINISHED),
    )
    categories = sorted(row.category_ids)
    return [
        run
        for run in candidates
        if run.id != row.id
        and run.results_purged_at is None
        and sorted(run.category_ids) == categories
    ]


class _Unavailable(WebError):
    """Nothing to compare with, in the reader's words (an error page where it propagates)."""


async def _other_run(
    session: AsyncSession, runs: RunLifecycle, row: CollectionRun, against: str
) -> CollectionRun:
    try:
        return await runs.get_run(session, org_id=row.org_id, run_id=uuid.UUID(against))
    except (ValueError, NotFoundError):
        raise _Unavailable(
            status.HTTP_404_NOT_FOUND,
            "There is no such run in this organization to compare with: choose one below.",
        ) from None


async def compared_run(
    session: AsyncSession, runs: RunLifecycle, row: CollectionRun, against: str
) -> CollectionRun:
    """The run to compare with (the one named, else the default), or _Unavailable saying
    in the reader's words why there is none."""
    other = await _other_run(session, runs, row, against) if against else None
    source = "preset" if row.preset_id else "list of categories"
    try:
        return await changes.run_to_compare(session, row, other)
    except ResultsPurgedError:
        name = other.name if other else "the other run"
        raise _Unavailable(
            status.HTTP_410_GONE,
            f"The results of {name} were deleted by the retention policy: choose another run.",
        ) from None
    except changes.NotComparableError:
        if other is None:
            message = (
                f"Nothing to compare with yet: no earlier run of this {source} completed. "
                "The next completed run will show what changed since this one."
            )
            raise _Unavailable(status.HTTP_200_OK, message) from None
        if other.id == row.id:
            message = "A run cannot be compared with itself: choose another run."
        else:
            message = (
                f"{other.name} collected other categories than this run, so their sellers "
                "cannot be compared: choose a run of the same categories."
            )
        raise _Unavailable(status.HTTP_409_CONFLICT, message) from None


def _page(
    name: changes.Section, found: tuple[list[Any], bool], offset: int, total: int | None
) -> SectionPage:
    items, more = found
    next_cursor = encode_offset(offset + len(items)) if more else None
    return SectionPage(name, list(items), offset, total, next_cursor)


def _totals(summary: changes.Summary | None) -> dict[str, int]:
    if summary is None:
        return {}
    return {name: getattr(summary, name) for name in changes.SECTIONS}


async def changes_section(
    session: AsyncSession,
    runs: RunLifecycle,
    row: CollectionRun,
    *,
    against: str = "",
    section: str = "",
    cursor: str = "",
) -> ChangesView:
    """The section as the run page shows it: the first page of every section, except
    `section` from `cursor` on (a "more" link followed without app.js)."""
    if not can_compare(row):
        return ChangesView()
    view = ChangesView(shown=True, against_param=against)
    view.choices = await comparable_runs(session, runs, row)
    if against:
        view.has_previous = await previous_completed_run(session, row) is not None
    try:
        view.against = await compared_run(session, runs, row, against)
    except _Unavailable as exc:
        view.problem, view.status_code = exc.message, exc.status_code
        return view
    view.has_previous = view.has_previous or not against
    comparison = await changes.compare(session, row, view.against, limit=CHANGES_PER_PAGE)
    view.summary = comparison.summary
    totals = _totals(comparison.summary)
    pages = {
        name: _page(name, found, 0, totals.get(name)) for name, found in comparison.pages.items()
    }
    if cursor and section in changes.SECTIONS:
        name: changes.Section = next(s for s in changes.SECTIONS if s == section)
        pages[name] = await _section(session, row, view.against, name, cursor, totals.get(name))
    view.sections = [pages[name] for name in changes.SECTIONS]
    return view


async def _section(
    session: AsyncSession,
    row: CollectionRun,
    against: CollectionRun,
    name: changes.Section,
    cursor: str,
    total: int | None,
) -> SectionPage:
    offset = decode_offset(cursor)  # InvalidError (400) for a cursor not made here
    comparison = await changes.compare(
        session, row, against, (name,), offset=offset, limit=CHANGES_PER_PAGE
    )
    return _page(name, comparison.pages[name], offset, total)


async def section_page(
    session: AsyncSession,
    runs: RunLifecycle,
    row: CollectionRun,
    *,
    against: str,
    section: str,
    cursor: str,
) -> tuple[SectionPage | None, str | None, int]:
    """One further page of one section (what app.js appends), or why there is none and
    the status to answer with."""
    chosen = next((s for s in changes.SECTIONS if s == section), None)
    if chosen is None:
        sections = ", ".join(changes.SECTIONS)
        return None, f"There is no section {section!r}: choose one of {sections}.", 400
    if not can_compare(row):
        return None, "This run has no changes to show (it has not finished).", 409
    try:
        other = await compared_run(session, runs, row, against)
    except _Unavailable as exc:
        return None, exc.message, 409 if exc.status_code == status.HTTP_200_OK else exc.status_code
    return await _section(session, row, other, chosen, cursor, None), None, 200
