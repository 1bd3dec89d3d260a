"""SLA's part of the desk configuration: calendars and a policy of targets per priority."""

from __future__ import annotations

from datetime import time

from pydantic import BaseModel, ConfigDict, Field, model_validator

from spoc_sla.calendar import WorkingCalendar


class Targets(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    calendar: str
    first_response_minutes: int = Field(gt=0)
    resolution_minutes: int = Field(gt=0)


def _default_calendars() -> dict[str, WorkingCalendar]:
    return {
        "round-the-clock": WorkingCalendar(),
        "office": WorkingCalendar(
            timezone="UTC",
            work_days=("mon", "tue", "wed", "thu", "fri"),
            opens=time(9),
            closes=time(17),
        ),
    }


def _default_policies() -> dict[str, Targets]:
    # Critical work runs round the clock; the rest in office hours, so promises stay honest (D18).
    return {
        "P1": Targets(
            calendar="round-the-clock", first_response_minutes=15, resolution_minutes=240
        ),
        "P2": Targets(calendar="office", first_response_minutes=30, resolution_minutes=480),
        "P3": Targets(calendar="office", first_response_minutes=120, resolution_minutes=1440),
        "P4": Targets(calendar="office", first_response_minutes=240, resolution_minutes=2880),
        "P5": Targets(calendar="office", first_response_minutes=480, resolution_minutes=4800),
    }


class SlaDesk(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    policy_name: str = "standard"
    calendars: dict[str, WorkingCalendar] = Field(default_factory=_default_calendars)
    policies: dict[str, Targets] = Field(default_factory=_default_policies)
    # Used for a priority the policy does not name, rather than leaving a ticket without targets.
    fallback_priority: str = "P3"

    @model_validator(mode="after")
    def _consistent(self) -> SlaDesk:
        for priority, targets in self.policies.items():
            if targets.calendar not in self.calendars:
                raise ValueError(f"policy {priority} names unknown calendar '{targets.calendar}'")
        if self.fallback_priority not in self.policies:
            raise ValueError(f"fallback_priority '{self.fallback_priority}' has no policy")
        return self

    def targets_for(self, priority: str) -> tuple[str, Targets]:
        if priority in self.policies:
            return priority, self.policies[priority]
        return self.fallback_priority, self.policies[self.fallback_priority]
