"""The status workflow: which status may follow which, for staff and for the requester.

One table, so the API's 409 lists exactly what this module allows. Pure functions, no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

Status = Literal["new", "open", "in_progress", "pending", "resolved", "closed"]
STATUSES: tuple[Status, ...] = ("new", "open", "in_progress", "pending", "resolved", "closed")

# What staff may move a ticket to from each status. `new` → `open` is routing's (ticket.routed)
# but an agent may also take or solve a ticket routing has not seen yet (a phone call solved
# while the caller is on the line is first-contact resolution, D4). `closed` is final: the
# requester is asked to open a new request.
STAFF_TRANSITIONS: dict[str, tuple[Status, ...]] = {
    "new": ("open", "in_progress", "resolved"),
    "open": ("in_progress", "pending", "resolved"),
    # Back to `open`: the agent hands the ticket back to the group's queue.
    "in_progress": ("open", "pending", "resolved"),
    "pending": ("in_progress", "resolved"),
    "resolved": ("open", "closed"),
    "closed": (),
}
# The requester only answers a resolution: confirm it or reopen it, within the window.
REQUESTER_TRANSITIONS: dict[str, tuple[Status, ...]] = {"resolved": ("open", "closed")}
# Statuses that need a reason: `pending` says what the requester must do.
NEEDS_REASON: frozenset[Status] = frozenset({"pending"})
# Where a requester's reply moves a ticket (D29: the SLA clock resumes when they answer).
RESUMED_BY_REPLY: dict[str, Status] = {"pending": "in_progress"}


def allowed_targets(current: str, *, by_requester: bool) -> tuple[Status, ...]:
    table = REQUESTER_TRANSITIONS if by_requester else STAFF_TRANSITIONS
    return table.get(current, ())


def within_reopen_window(resolved_at: datetime | None, now: datetime, days: int) -> bool:
    """A ticket resolved before this projection kept `resolved_at` counts from `now`: the
    requester is not punished for a missing date."""
    if resolved_at is None:
        return True
    return now <= resolved_at + timedelta(days=days)
