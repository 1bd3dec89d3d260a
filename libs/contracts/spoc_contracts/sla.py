"""Events published by sla: clocks started and moved, warnings, breaches and targets met."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from spoc_contracts.envelope import Event


class ClockTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    metric: str
    due_at: datetime
    target_seconds: int = Field(ge=0)


class SlaClockStarted(Event):
    TYPE = "sla.clock_started"
    VERSION = 1

    number: str
    priority: str
    policy: str
    calendar: str
    clocks: list[ClockTarget]


class SlaClockUpdated(Event):
    TYPE = "sla.clock_updated"
    VERSION = 1

    number: str
    metric: str
    state: str
    due_at: datetime | None
    reason: str | None = None


class SlaWarning(Event):
    TYPE = "sla.warning"
    VERSION = 1

    number: str
    metric: str
    due_at: datetime
    percent_elapsed: int = Field(ge=0)


class SlaBreached(Event):
    TYPE = "sla.breached"
    VERSION = 1

    number: str
    metric: str
    priority: str
    due_at: datetime
    breached_at: datetime


class SlaMet(Event):
    TYPE = "sla.met"
    VERSION = 1

    number: str
    metric: str
    due_at: datetime
    met_at: datetime
