"""Ticket reports for managers (D4, D25): a period's tickets counted by category, group,
priority, … with how many were resolved, and at first contact; as JSON or as a CSV file.

The counting is SQL (repository.count_tickets: one GROUP BY); here are the period's rules, the
shape of the answer and the CSV, which a spreadsheet opens without running any of it."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_intake import repository
from spoc_platform.web import ApiError

Dimension = Literal["category", "subcategory", "item", "group", "priority", "type", "channel"]
DIMENSIONS: tuple[Dimension, ...] = (
    "category",
    "subcategory",
    "item",
    "group",
    "priority",
    "type",
    "channel",
)
DEFAULT_DAYS = 30
MAX_DAYS = 366
# What a spreadsheet reads as a formula at the start of a cell (OWASP, "CSV injection"); tab
# and carriage return too, which some strip before they look.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class TicketCountRow(BaseModel):
    """One combination of the values counted by (only those asked for are present; null is
    a ticket without one, e.g. uncategorised)."""

    category: str | None = None
    subcategory: str | None = None
    item: str | None = None
    group: str | None = Field(default=None, description="The group's id")
    priority: str | None = None
    type: str | None = None
    channel: str | None = None
    count: int
    resolved: int = Field(description="Of `count`, resolved or closed now")
    first_contact_resolved: int = Field(description="Of `resolved`, at first contact (D4)")


class FirstContactResolution(BaseModel):
    resolved: int = Field(description="The period's tickets resolved or closed now")
    first_contact: int = Field(description="Of those, resolved at first contact")
    rate: float | None = Field(description="first_contact / resolved; null with none resolved")


class TicketReport(BaseModel):
    from_: date = Field(alias="from")
    to: date
    by: list[Dimension]
    total: int
    rows: list[TicketCountRow]
    first_contact_resolution: FirstContactResolution


@dataclass(frozen=True)
class Period:
    """Whole days in UTC, both ends included."""

    first: date
    last: date

    @property
    def since(self) -> datetime:
        return datetime.combine(self.first, time.min, UTC)

    @property
    def until(self) -> datetime:
        """The moment after the last day (the last moment there is, for the last day there is)."""
        if self.last == date.max:
            return datetime.max.replace(tzinfo=UTC)
        return datetime.combine(self.last + timedelta(days=1), time.min, UTC)


def period_of(first: date | None, last: date | None, *, today: date) -> Period:
    """The period asked for: `last` defaults to today (UTC), `first` to the 30 days ending on
    `last`. A bad one is a 422 naming the parameter the caller gave to blame."""
    end = last if last is not None else today
    # date.min has no day before it.
    start = (
        first
        if first is not None
        else end - timedelta(days=min(DEFAULT_DAYS - 1, end.toordinal() - 1))
    )
    if end < start:
        wrong = "to" if last is not None else "from"
        raise _bad_period(wrong, f"'to' ({end}) is before 'from' ({start})", "period_reversed")
    if (end - start).days + 1 > MAX_DAYS:
        wrong = "from" if first is not None else "to"
        raise _bad_period(
            wrong,
            f"the period from {start} to {end} is longer than {MAX_DAYS} days",
            "period_too_long",
        )
    return Period(start, end)


def _bad_period(parameter: str, message: str, kind: str) -> ApiError:
    return ApiError(
        422,
        "validation_error",
        f"invalid request: query.{parameter}",
        [{"field": f"query.{parameter}", "message": message, "type": kind}],
    )


def dimensions_of(asked: Sequence[str] | None) -> list[Dimension]:
    """`by` as sent, repeated or comma-separated, each once in the order first asked;
    `category` when none is. The route's schema has let through only known names."""
    wanted: list[Dimension] = []
    for value in asked or ():
        for name in value.split(","):
            if name in DIMENSIONS and name not in wanted:
                wanted.append(name)
    return wanted or ["category"]


async def ticket_report(
    engine: AsyncEngine, period: Period, by: Sequence[Dimension]
) -> TicketReport:
    async with engine.connect() as conn:
        counted = await repository.count_tickets(
            conn, since=period.since, until=period.until, by=by
        )
    rows = [TicketCountRow.model_validate(dict(row._mapping)) for row in counted]
    resolved = sum(row.resolved for row in rows)
    first_contact = sum(row.first_contact_resolved for row in rows)
    return TicketReport.model_validate(
        {
            "from": period.first,
            "to": period.last,
            "by": list(by),
            "total": sum(row.count for row in rows),
            "rows": rows,
            "first_contact_resolution": FirstContactResolution(
                resolved=resolved,
                first_contact=first_contact,
                rate=round(first_contact / resolved, 4) if resolved else None,
            ),
        }
    )


def csv_of(report: TicketReport) -> str:
    """The rows as CSV: the dimensions asked for, then the counts; an empty value for none."""
    columns = [*report.by, "count", "resolved", "first_contact_resolved"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in report.rows:
        values = row.model_dump()
        writer.writerow([_cell(values[column]) for column in columns])
    return out.getvalue()


def _cell(value: object) -> object:
    """A value a spreadsheet shows as text: one that would start a formula (a category named
    "=HYPERLINK(…)") gets a leading apostrophe. Counts are numbers, never touched."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


def csv_filename(report: TicketReport) -> str:
    return f"spoc-tickets-{report.from_}-{report.to}.csv"
