"""The SLA state intake shows agents, per metric, from sla's events: the ordering rules in one
place (no I/O; handlers.py reads the ticket, applies a fact here and writes the result).

sla's events about one ticket arrive late, twice, or out of order (each type travels on its
own). The rules make any arrival order of the same facts end in the same state:

- A clock that is going (running, paused, at_risk) follows sla's newest word: clock_started,
  clock_updated and warning apply only when their sequence is above the metric's last applied
  one (a per-metric sequence, so a late fact about one metric is not lost to a newer one about
  the other). A duplicate has the same sequence and changes nothing. Sequence 0 (a publisher
  that does not number its events) cannot be ordered and always applies.
- `breached` and `met` are facts with their own moments, kept whatever order they come in
  (the earliest of each). From them the state follows: met if it was met before any breach,
  else breached (a target met late stays breached: it was missed). Both stop the clock.
- A stopped clock is never moved again: a late warning after a breach does not make it at_risk,
  a met clock stays met, and a clock_updated that re-times it (even a newer one, say after a
  priority change) changes neither its state nor the due time it was breached or met against.
  Un-breaching would need a fact of its own from sla, not an inference from a re-time that
  may itself be late. The event still lands in the agents' timeline.
- A clock_updated without a due time (a pause) keeps the last due time: the requester's target
  stays the last one sla gave until sla re-times the clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

METRICS = ("first_response", "resolution")
LABELS = {"first_response": "First response", "resolution": "Resolution"}
GOING = frozenset({"running", "paused", "at_risk"})
STOPPED = frozenset({"breached", "met"})
# The ticket's state is its most urgent metric's: the agents' filter reads that one column.
URGENCY = {"breached": 4, "at_risk": 3, "running": 2, "paused": 1, "met": 0}

FactKind = Literal["going", "breached", "met"]


@dataclass(frozen=True)
class MetricState:
    state: str | None = None
    due_at: datetime | None = None
    sequence: int = 0
    breached_at: datetime | None = None
    met_at: datetime | None = None

    @classmethod
    def of(cls, row: Any, metric: str) -> MetricState:
        return cls(
            state=getattr(row, f"{metric}_state"),
            due_at=getattr(row, f"{metric}_due_at"),
            sequence=getattr(row, f"{metric}_sequence"),
            breached_at=getattr(row, f"{metric}_breached_at"),
            met_at=getattr(row, f"{metric}_met_at"),
        )

    def columns(self, metric: str) -> dict[str, Any]:
        return {
            f"{metric}_state": self.state,
            f"{metric}_due_at": self.due_at,
            f"{metric}_sequence": self.sequence,
            f"{metric}_breached_at": self.breached_at,
            f"{metric}_met_at": self.met_at,
        }

    @property
    def stopped(self) -> bool:
        return self.state in STOPPED


@dataclass(frozen=True)
class SlaFact:
    """One event's word on one metric. `state` is the going state for kind "going"."""

    kind: FactKind
    sequence: int
    due_at: datetime | None
    state: str = "running"
    at: datetime | None = None


def apply(current: MetricState, fact: SlaFact) -> MetricState:
    if fact.kind == "going":
        if current.stopped or fact.state not in GOING:
            return current
        if fact.sequence != 0 and fact.sequence <= current.sequence:
            return current
        return replace(
            current,
            state=fact.state,
            due_at=fact.due_at or current.due_at,
            sequence=max(current.sequence, fact.sequence),
        )
    breached_at, met_at = current.breached_at, current.met_at
    if fact.kind == "breached":
        breached_at = _earliest(breached_at, fact.at)
    else:
        met_at = _earliest(met_at, fact.at)
    state = _stopped_state(breached_at, met_at)
    decided_by_this = (state == "breached" and breached_at == fact.at) or (
        state == "met" and met_at == fact.at
    )
    return replace(
        current,
        state=state,
        due_at=fact.due_at if decided_by_this and fact.due_at else current.due_at,
        breached_at=breached_at,
        met_at=met_at,
    )


def ticket_summary(metrics: Iterable[MetricState]) -> dict[str, Any]:
    """The ticket's `sla_state` (its most urgent metric's) and `sla_due_at` (the nearest due time
    of a clock still counting down; a breached one is overdue and comes first)."""
    known = [m for m in metrics if m.state is not None]
    counting = [
        m.due_at
        for m in known
        if m.due_at is not None and m.state in ("running", "at_risk", "breached") and not m.met_at
    ]
    states = [m.state for m in known if m.state is not None]
    return {
        "sla_state": max(states, key=URGENCY.__getitem__, default=None),
        "sla_due_at": min(counting, default=None),
    }


def _earliest(known: datetime | None, new: datetime | None) -> datetime | None:
    if known is None or new is None:
        return known or new
    return min(known, new)


def _stopped_state(breached_at: datetime | None, met_at: datetime | None) -> str:
    if met_at is not None and (breached_at is None or met_at < breached_at):
        return "met"
    return "breached"
