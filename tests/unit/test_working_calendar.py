"""Business-time arithmetic for SLA targets (D28): work weeks, hours, zones, holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest
from pydantic import ValidationError

from spoc_sla.calendar import WorkingCalendar

pytestmark = pytest.mark.unit
HOUR = 3600

OFFICE = WorkingCalendar(
    timezone="UTC", work_days=("mon", "tue", "wed", "thu", "fri"), opens=time(9), closes=time(17)
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_round_the_clock_adds_plain_time() -> None:
    assert WorkingCalendar().add_working_time(utc(2026, 11, 28, 23), 2 * HOUR) == utc(
        2026, 11, 29, 1
    )


@pytest.mark.parametrize(
    ("start", "seconds", "due"),
    [
        (utc(2026, 11, 23, 10), 2 * HOUR, utc(2026, 11, 23, 12)),  # inside one day
        (utc(2026, 11, 23, 16), 2 * HOUR, utc(2026, 11, 24, 10)),  # over the night
        (utc(2026, 11, 27, 16), 2 * HOUR, utc(2026, 11, 30, 10)),  # Friday over the weekend
        (utc(2026, 11, 28, 12), 1 * HOUR, utc(2026, 11, 30, 10)),  # opened on a Saturday
        (utc(2026, 11, 23, 6), 1 * HOUR, utc(2026, 11, 23, 10)),  # before opening
        (utc(2026, 11, 23, 17), 8 * HOUR, utc(2026, 11, 24, 17)),  # exactly a working day
    ],
)
def test_office_hours_skip_nights_and_weekends(
    start: datetime, seconds: int, due: datetime
) -> None:
    assert OFFICE.add_working_time(start, seconds) == due


def test_a_saturday_to_wednesday_week_in_tehran_skips_thursday_friday_and_holidays() -> None:
    tehran = WorkingCalendar(
        timezone="Asia/Tehran",
        work_days=("sat", "sun", "mon", "tue", "wed"),
        opens=time(8),
        closes=time(16),
        holidays=frozenset({date(2026, 11, 28)}),
    )
    # Wednesday 15:00 Tehran (11:30 UTC) + 2 working hours: 1 h on Wednesday, then Thursday,
    # Friday (weekend) and Saturday 28th (a holiday) pass, and Sunday 08:00–09:00 gives the rest.
    due = tehran.add_working_time(utc(2026, 11, 25, 11, 30), 2 * HOUR)
    assert due == utc(2026, 11, 29, 5, 30)  # Sunday 09:00 Tehran (+03:30)


def test_working_time_across_a_daylight_saving_change_counts_real_hours() -> None:
    warsaw = WorkingCalendar(timezone="Europe/Warsaw", opens=time(0), closes=None)
    # The clocks go back on 25 October 2026: that Sunday has 25 hours.
    start = utc(2026, 10, 24, 22)  # Sunday 00:00 in Warsaw (CEST, +02:00)
    assert warsaw.add_working_time(start, 25 * HOUR) == utc(2026, 10, 25, 23)


def test_a_start_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        OFFICE.add_working_time(datetime(2026, 11, 23, 10), HOUR)


@pytest.mark.parametrize(
    "bad",
    [
        {"timezone": "Mars/Olympus"},
        {"work_days": ("mon", "funday")},
        {"work_days": ()},
        {"opens": time(17), "closes": time(9)},
    ],
    ids=["unknown zone", "unknown weekday", "no working day", "closes before opening"],
)
def test_an_impossible_calendar_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        WorkingCalendar(**bad)  # type: ignore[arg-type]
