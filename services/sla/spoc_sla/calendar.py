"""Business-time arithmetic: when does N working seconds from `start` end, in a team's calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Far enough for any real target; a calendar with no working time at all is refused earlier.
MAX_DAYS_AHEAD = 3 * 366

# "09:00" or "17:30:00": a wall-clock time, read in the calendar's own time zone. JSON Schema's
# `format: time` is RFC 3339's full-time, which requires an offset, so it is not claimed.
TIME_OF_DAY_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?$"


def _wall_clock(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("a time of day takes no offset: the calendar's timezone says where")
    return value


TimeOfDay = Annotated[
    time,
    AfterValidator(_wall_clock),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": TIME_OF_DAY_PATTERN,
            "description": "HH:MM[:SS] in the calendar's time zone, without an offset",
            "examples": ["09:00", "17:30:00"],
        }
    ),
]


class WorkingCalendar(BaseModel):
    """Working hours in a time zone, on chosen weekdays (Mon–Fri, Sat–Wed, …), minus holidays."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str = "UTC"
    # Empty means round the clock, every day.
    work_days: tuple[str, ...] = WEEKDAYS
    opens: TimeOfDay = time(0, 0)
    closes: TimeOfDay | None = None
    holidays: frozenset[date] = Field(default_factory=frozenset)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone '{value}' (use an IANA name)") from error
        return value

    @field_validator("work_days")
    @classmethod
    def _weekday_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [d for d in value if d not in WEEKDAYS]
        if unknown:
            raise ValueError(f"unknown weekdays {unknown}; use {', '.join(WEEKDAYS)}")
        if not value:
            raise ValueError("a calendar needs at least one working day")
        return value

    @model_validator(mode="after")
    def _hours_make_sense(self) -> WorkingCalendar:
        if self.closes is not None and self.closes <= self.opens:
            raise ValueError("closes must be after opens (overnight shifts are not supported yet)")
        return self

    @property
    def is_round_the_clock(self) -> bool:
        return (
            self.closes is None
            and self.opens == time(0)
            and len(self.work_days) == 7
            and not self.holidays
        )

    def _working_span(self, day: date, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
        if WEEKDAYS[day.weekday()] not in self.work_days or day in self.holidays:
            return None
        start = datetime.combine(day, self.opens, zone)
        end = (
            datetime.combine(day, self.closes, zone)
            if self.closes is not None
            else datetime.combine(day + timedelta(days=1), time(0), zone)
        )
        # Compare in UTC so a daylight-saving change gives the real elapsed length.
        return start.astimezone(UTC), end.astimezone(UTC)

    def add_working_time(self, start: datetime, seconds: float) -> datetime:
        """The instant `seconds` of working time after `start` (an aware datetime)."""
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        start = start.astimezone(UTC)
        if self.is_round_the_clock:
            return start + timedelta(seconds=seconds)
        zone = ZoneInfo(self.timezone)
        remaining = timedelta(seconds=seconds)
        day = start.astimezone(zone).date()
        for _ in range(MAX_DAYS_AHEAD):
            span = self._working_span(day, zone)
            day += timedelta(days=1)
            if span is None or span[1] <= start:
                continue
            begin = max(span[0], start)
            available = span[1] - begin
            if remaining <= available:
                return begin + remaining
            remaining -= available
        raise ValueError(f"no working time found within {MAX_DAYS_AHEAD} days")
