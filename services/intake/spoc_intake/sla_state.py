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
  (the earliest moment of each, with the newest sequence). From them the state follows: met
  if it was met before any breach, else breached (a target met late stays breached: it was
  missed). Both stop the clock.
- A clock runs, stops, and may run again: sla restarts a stopped clock (say the requester
  reopened the ticket) with a going fact numbered after the stop. So facts fall into runs by
  sequence: a numbered going fact newer than a stop begins a new run, and that stop's moment
  is cleared (the state is the fact's, unless stops newer still came first: then theirs). A
  going fact older than the stop, or unnumbered, is of the run that stopped and moves
  nothing: a late warning after a breach does not make it at_risk, and a met clock stays
  met. A stop older than the newest going fact applied belongs to an earlier run (that fact
  restarted the clock after it) and moves nothing either. So sla sends a going fact about a
  stopped clock only when it restarts it.
- A clock_updated without a due time (a pause) keeps the last due time: the requester's target
  stays the last one sla gave until sla re-times the clock.
- The ticket's own `sla_state` and `sla_due_at` (the agents' filter and sort) also read its
  status: a resolved or closed ticket's clocks do not count down for the desk whatever sla
  last said (a call resolved during the call is clocked after it), so they count as paused
  and give no due time. A breach stays a breach. Every event still lands in the timeline.
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
# Statuses whose clocks the desk no longer works against (workflow.py's last two).
SETTLED = frozenset({"resolved", "closed"})

FactKind = Literal["going", "breached", "met"]


@dataclass(frozen=True)
class MetricState:
    state: str | None = None
    due_at: datetime | None = None
    sequence: int = 0
    breached_at: datetime | None = None
    met_at: datetime | None = None
    # The sequences of the breach and the met kept (0: none): what tells a stop of the
    # clock's current run from one a newer going fact left behind.
    breached_sequence: int = 0
    met_sequence: int = 0

    @classmethod
    def of(cls, row: Any, metric: str) -> MetricState:
        return cls(**{name: getattr(row, f"{metric}_{name}") for name in _FIELDS})

    def columns(self, metric: str) -> dict[str, Any]:
        return {f"{metric}_{name}": getattr(self, name) for name in _FIELDS}

    @property
    def stopped(self) -> bool:
        return self.state in STOPPED


# Each field is the ticket column `<metric>_<field>`.
_FIELDS = tuple(MetricState.__dataclass_fields__)


@dataclass(frozen=True)
class SlaFact:
    """One event's word on one metric. `state` is the going state for kind "going"."""

    kind: FactKind
    sequence: int
    due_at: datetime | None
    state: str = "running"
    at: datetime | None = None


def apply(current: MetricState, fact: SlaFact) -> MetricState:
    numbered = fact.sequence != 0
    if fact.kind == "going":
        if fact.state not in GOING or (numbered and fact.sequence <= current.sequence):
            return current
        if not current.stopped:
            return replace(
                current,
                state=fact.state,
                due_at=fact.due_at or current.due_at,
                sequence=max(current.sequence, fact.sequence),
            )
        if not numbered:
            return current
        return _going_after_a_stop(current, fact)
    if numbered and fact.sequence < current.sequence:
        return current
    # An unnumbered stop is placed just after the last going fact applied.
    sequence = fact.sequence or current.sequence
    breached_at, met_at = current.breached_at, current.met_at
    breached_sequence, met_sequence = current.breached_sequence, current.met_sequence
    if fact.kind == "breached":
        breached_at = _earliest(breached_at, fact.at)
        breached_sequence = max(breached_sequence, sequence)
    else:
        met_at = _earliest(met_at, fact.at)
        met_sequence = max(met_sequence, sequence)
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
        breached_sequence=breached_sequence,
        met_sequence=met_sequence,
    )


def _going_after_a_stop(current: MetricState, fact: SlaFact) -> MetricState:
    """A numbered going fact newer than every going fact applied, about a stopped clock: the
    stops older than it belong to a run it ended (sla restarted the clock); the newer ones,
    if any, stopped the run it began (they came first). Without any, the clock runs again."""
    breach_kept = current.breached_sequence > fact.sequence
    met_kept = current.met_sequence > fact.sequence
    breach_dropped = current.breached_at is not None and not breach_kept
    met_dropped = current.met_at is not None and not met_kept
    if not breach_dropped and not met_dropped:
        # A late going fact of the run that stopped: it moves nothing.
        return replace(current, sequence=fact.sequence)
    if not breach_kept and not met_kept:
        return MetricState(
            state=fact.state, due_at=fact.due_at or current.due_at, sequence=fact.sequence
        )
    breached_at = current.breached_at if breach_kept else None
    met_at = current.met_at if met_kept else None
    return replace(
        current,
        state=_stopped_state(breached_at, met_at),
        # The kept stop came with the new run, whose due time this fact (if any) gave.
        due_at=fact.due_at or current.due_at,
        sequence=fact.sequence,
        breached_at=breached_at,
        met_at=met_at,
        breached_sequence=current.breached_sequence if breach_kept else 0,
        met_sequence=current.met_sequence if met_kept else 0,
    )


def ticket_summary(metrics: Iterable[MetricState], *, status: str) -> dict[str, Any]:
    """The ticket's `sla_state` (its most urgent metric's) and `sla_due_at` (the nearest due time
    of a clock still counting down; a breached one is overdue and comes first). A settled
    ticket's going clocks count as paused, and none counts down."""
    settled = status in SETTLED
    known = [m for m in metrics if m.state is not None]
    counting = [
        m.due_at
        for m in known
        if m.due_at is not None and m.state in ("running", "at_risk", "breached") and not m.met_at
    ]
    states = [
        "paused" if settled and m.state in GOING else m.state for m in known if m.state is not None
    ]
    return {
        "sla_state": max(states, key=URGENCY.__getitem__, default=None),
        "sla_due_at": None if settled else min(counting, default=None),
    }


def ticket_summary_of(row: Any, *, status: str) -> dict[str, Any]:
    """ticket_summary for a ticket row as read, at `status` (say the one it is moving to)."""
    return ticket_summary((MetricState.of(row, metric) for metric in METRICS), status=status)


def _earliest(known: datetime | None, new: datetime | None) -> datetime | None:
    if known is None or new is None:
        return known or new
    return min(known, new)


def _stopped_state(breached_at: datetime | None, met_at: datetime | None) -> str:
    if met_at is not None and (breached_at is None or met_at < breached_at):
        return "met"
    return "breached"
