"""Shifts: when an agent is on duty, in their own time zone, night shifts included. Routing hands
a ticket only to someone on duty; a ticket that comes while nobody is waits in the group's queue
until a shift starts (waiting_queue.py)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from spoc_platform.dates import WEEKDAYS, TimeOfDay, TimeZoneSetting, Weekdays


class Shift(BaseModel):
    """Working hours on chosen weekdays in a time zone. A shift that ends at or before its start
    runs past midnight into the next day (22:00–06:00); 00:00–00:00 is the whole day. A day off
    (a holiday, a stand-down) cancels the shift that starts on it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: TimeZoneSetting = "UTC"
    days: Weekdays = WEEKDAYS
    starts: TimeOfDay = time(0)
    ends: TimeOfDay = time(0)
    days_off: frozenset[date] = Field(default_factory=frozenset)

    @cached_property
    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _works(self, day: date) -> bool:
        return WEEKDAYS[day.weekday()] in self.days and day not in self.days_off

    def on_duty(self, now: datetime) -> bool:
        """Whether `now` (aware) falls in a shift: today's, or last night's running on."""
        local = now.astimezone(self._zone)
        today, clock = local.date(), local.time().replace(tzinfo=None)
        if self.ends > self.starts:
            return self._works(today) and self.starts <= clock < self.ends
        # Past midnight (or the whole day when starts == ends).
        if self._works(today) and clock >= self.starts:
            return True
        return self._works(today - timedelta(days=1)) and clock < self.ends
