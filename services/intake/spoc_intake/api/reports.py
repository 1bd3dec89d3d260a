"""/api/v1/reports: what the desk's managers read the load and first-contact resolution from
(D4, D25), as JSON or as a CSV file for a spreadsheet."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BeforeValidator, StringConstraints

from spoc_intake.api.deps import Container, CurrentCaller
from spoc_intake.callers import Caller
from spoc_intake.reports import (
    DIMENSIONS,
    MAX_DAYS,
    TicketReport,
    csv_filename,
    csv_of,
    dimensions_of,
    period_of,
    ticket_report,
)
from spoc_platform.db import utc_now
from spoc_platform.openapi import error_response
from spoc_platform.web import ApiError, SharedPathRoute

router = APIRouter(prefix="/api/v1/reports", tags=["reports"], route_class=SharedPathRoute)

CSV = "text/csv; charset=utf-8"
# One name, or several separated by commas.
_NAME = "(" + "|".join(DIMENSIONS) + ")"
BY_PATTERN = f"^{_NAME}(,{_NAME})*$"
ByValue = Annotated[str, StringConstraints(pattern=BY_PATTERN, max_length=200)]


def _written_as_a_day(value: object) -> object:
    # Pydantic would also take "0" or "1700000000" as a date (seconds since 1970).
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("not a date written YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_written_as_a_day)]


def require_manager(caller: Caller) -> None:
    if caller.is_anonymous:
        raise ApiError(401, "unauthenticated", "sign in as a manager or an admin first")
    if caller.role not in ("manager", "admin"):
        raise ApiError(403, "forbidden", "only managers and admins read the desk's reports")


def wants_csv(format: str | None, accept: str) -> bool:
    """`?format=` decides; else whichever of CSV and JSON the Accept header names first."""
    if format is not None:
        return format == "csv"
    for media_range in accept.split(","):
        media_type = media_range.split(";")[0].strip().lower()
        if media_type == "text/csv":
            return True
        if media_type in ("application/json", "application/*"):
            return False
    return False


@router.get(
    "/tickets",
    response_model=TicketReport,
    responses={
        200: {
            "description": "The counts as JSON, or as CSV (`?format=csv` or `Accept: "
            "text/csv`): a header row (the dimensions, then `count`, `resolved`, "
            "`first_contact_resolved`) and one row per combination",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
        401: error_response(
            401, "Not signed in, or a credential that is not valid; code `unauthenticated`"
        ),
        403: error_response(403, "Not a manager or an admin; code `forbidden`"),
        422: error_response(
            422,
            "A date that is not YYYY-MM-DD, an unknown `by`, `to` before `from` "
            f"(`period_reversed`) or a period longer than {MAX_DAYS} days (`period_too_long`); "
            "code `validation_error`, the parameter named in `error.details`",
        ),
        503: error_response(503),
    },
    summary="Tickets counted by category, group, priority, … for a period, with "
    "first-contact resolution (managers and admins)",
    description="Counts the tickets created in the period: whole days in **UTC**, both ends "
    f"included, at most {MAX_DAYS} days (default: the 30 days ending today). Each row is one "
    "combination of the `by` values (null: the ticket has none, e.g. uncategorised), most "
    "tickets first. `resolved`: of those tickets, the ones resolved or closed now. "
    "`first_contact_resolved`: of those, resolved at first contact (D4): by their first owner "
    "in a tier-1 group, never escalated, reopened or handed to another owner; or a phone call "
    "solved while the caller was on the line and never reopened or escalated since.",
)
async def report_ticket_counts(
    container: Container,
    caller: CurrentCaller,
    request: Request,
    from_: Annotated[
        Day | None,
        Query(alias="from", description="First day (YYYY-MM-DD, UTC), included"),
    ] = None,
    to: Annotated[
        Day | None, Query(description="Last day (YYYY-MM-DD, UTC), included; default today")
    ] = None,
    by: Annotated[
        list[ByValue] | None,
        Query(
            description="What to count by: repeatable or comma-separated, rows per "
            "combination; default `category`. `group` is the group's id",
        ),
    ] = None,
    format: Annotated[
        Literal["json", "csv"] | None,
        Query(description="Overrides the Accept header"),
    ] = None,
) -> Any:
    require_manager(caller)
    period = period_of(from_, to, today=utc_now().date())
    report = await ticket_report(container.runtime.engine, period, dimensions_of(by))
    headers = {"Cache-Control": "no-store"}
    if wants_csv(format, request.headers.get("accept", "")):
        headers["Content-Disposition"] = f'attachment; filename="{csv_filename(report)}"'
        return Response(csv_of(report), media_type=CSV, headers=headers)
    return Response(
        report.model_dump_json(by_alias=True, exclude_unset=True),
        media_type="application/json",
        headers=headers,
    )
