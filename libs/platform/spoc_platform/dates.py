"""Dates as people read them: in their language's words and order, on their clock.

Events and the database keep UTC; a person sees a moment in the recipient's locale (Babel's
CLDR data: `wt., 1 gru 2026, 20:05`, `سه‌شنبه 1 دسامبر 2026`) and in a named time zone, with
that zone spelt out, so "by 17:00" is never read on the wrong clock."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime, format_skeleton, format_time, get_datetime_format
from pydantic import AfterValidator, WithJsonSchema

DEFAULT_LOCALE = "en"


def zone_named(name: str) -> ZoneInfo:
    """The IANA zone `name` (`Europe/Warsaw`); ValueError if there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {name!r} (an IANA name: Europe/Warsaw)") from error


def _known_zone(name: str) -> str:
    zone_named(name)
    return name


# A setting naming a time zone: refused at start-up unless the IANA database knows it.
TimeZoneSetting = Annotated[str, AfterValidator(_known_zone)]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _weekday_names(days: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [d for d in days if d not in WEEKDAYS]
    if unknown:
        raise ValueError(f"unknown weekdays {unknown}; use {', '.join(WEEKDAYS)}")
    if not days:
        raise ValueError("name at least one day")
    return days


# Days of the week by their short English names (a Sat–Wed week: sat, sun, mon, tue, wed).
Weekdays = Annotated[tuple[str, ...], AfterValidator(_weekday_names)]


def locale_for(tag: str | None) -> Locale:
    """Babel's locale for a BCP 47 tag (`fa-IR`, `pl`, `pt_BR`); English when unknown."""
    if tag:
        try:
            return Locale.parse(tag.strip().replace("-", "_"))
        except (UnknownLocaleError, ValueError):
            pass
    return Locale.parse(DEFAULT_LOCALE)


def preferred_locale(accept_language: str | None) -> str | None:
    """The first language of an Accept-Language header that Babel knows, by quality."""
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and tag != "*" and quality > 0:
            ranked.append((-quality, position, tag))
    for _, _, tag in sorted(ranked):
        try:
            Locale.parse(tag.replace("-", "_"))
        except (UnknownLocaleError, ValueError):
            continue
        return tag
    return None


def for_people(moment: datetime, *, locale: str | None, zone: str) -> str:
    """`moment` (timezone-aware) for a person reading `locale`, on the clock of `zone`: the
    locale's medium date with the weekday, its short time, and the zone's name."""
    language = locale_for(locale)
    tz = zone_named(zone)
    day = format_skeleton("yMMMEd", moment, tzinfo=tz, locale=language)
    clock = format_time(moment, "short", tzinfo=tz, locale=language)
    zone_name = format_datetime(moment, "zzzz", tzinfo=tz, locale=language)
    combined = str(get_datetime_format("medium", locale=language))
    return combined.replace("{1}", day).replace("{0}", f"{clock} ({zone_name})")


def _wall_clock(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("a time of day takes no offset: the time zone beside it says where")
    return value


# "09:00" or "22:30:00": a wall-clock time read in a time zone given beside it. JSON Schema's
# `format: time` is RFC 3339's full-time, which requires an offset, so it is not claimed (a
# response "22:00:00" would not match the document).
TimeOfDay = Annotated[
    time,
    AfterValidator(_wall_clock),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?$",
            "description": "HH:MM[:SS] in the time zone given beside it, without an offset",
            "examples": ["09:00", "22:30:00"],
        }
    ),
]
