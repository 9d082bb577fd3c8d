"""What a run needs of the providers and when it should finish, on the web pages: on the
new-run form (a fragment the form fetches as the preset or the size changes, from the
same rules as POST /collection/runs/estimate) and in the live part of a run's page."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import Runs, SessionDep
from app.errors import AppError
from app.instance import instance_of
from app.models import RunCreate
from app.runs import estimate, pace
from app.tables import CollectionRun
from app.web.errors import field_errors
from app.web.rendering import render
from app.web.session import CanRun

router = APIRouter(include_in_schema=False)


async def timing(
    request: Request,
    session: AsyncSession,
    row: CollectionRun,
    *,
    now: datetime,
    with_estimate: bool = True,
) -> dict[str, Any]:
    """What a run's page shows of its time: how long it has been going and has left
    (`timing`), `now`, and until it finishes what it needs of the providers (`estimate`;
    not in the part of the page polled every second, which stays a few cheap reads)."""
    measured = await pace.timing(session, row, now=now)
    found = None
    if with_estimate and row.finished_at is None:
        instance = instance_of(request)
        found = await estimate.estimate_run(
            session,
            instance.database,
            instance.settings,
            org_id=row.org_id,
            work=row,
            now=now,
            remaining=measured.remaining,
        )
    return {"timing": measured, "estimate": found, "now": now}


@router.get("/runs/new/estimate")
async def new_run_estimate(
    request: Request,
    context: CanRun,
    session: SessionDep,
    runs: Runs,
    preset_id: Annotated[str, Query()] = "",
    products_per_category: Annotated[str, Query()] = "",
    listings_per_product: Annotated[str, Query()] = "",
) -> Response:
    """The estimate of the run the new-run form describes, or what to fill in first."""
    fields = {
        "preset_id": preset_id.strip(),
        "products_per_category": products_per_category.strip(),
        "listings_per_product": listings_per_product.strip(),
    }
    found, message = None, None
    if not fields["preset_id"]:
        message = "Choose a preset to see what the run needs and when it should finish."
    else:
        try:
            body = RunCreate.model_validate({k: v for k, v in fields.items() if v})
            instance = instance_of(request)
            work = await estimate.planned(
                session,
                instance.settings,
                org_id=context.org.org_id,
                preset_id=body.preset_id,
                category_ids=None,
                products_per_category=body.products_per_category,
            )
            found = await estimate.estimate_run(
                session,
                instance.database,
                instance.settings,
                org_id=context.org.org_id,
                work=work,
                now=runs.clock(),
            )
        except ValidationError as exc:
            message = "No estimate: " + "; ".join(field_errors(exc).values())
        except AppError as exc:
            message = f"No estimate: {exc.message}"
    return render(request, "runs/_estimate.html", estimate=found, message=message)
