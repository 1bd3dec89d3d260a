"""Structured logs: JSON outside a terminal, each line with its ticket, event and correlation.

Every line carries its time in ISO 8601 UTC (`2026-12-01T19:14:29.521Z`), whatever the host's
zone, so lines from several machines sort and compare as they are. JSON lines hold no terminal
colour codes: uvicorn attaches a coloured copy of its messages (`color_message`), which is
dropped, and any escape sequence left in a field is removed."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator
from pythonjsonlogger.json import JsonFormatter

_context: ContextVar[dict[str, Any]] = ContextVar("spoc_log_context", default={})  # noqa: B039

# CSI sequences (colours, cursor moves) as terminals read them.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


class LogLevel(StrEnum):
    """The levels a Spoc process logs at; anything else is refused where it is given."""

    CRITICAL = "CRITICAL"
    ERROR = "ERROR"
    WARNING = "WARNING"
    INFO = "INFO"
    DEBUG = "DEBUG"

    @classmethod
    def parse(cls, value: str) -> LogLevel:
        """`info`, `Info` and `INFO` alike; ValueError naming the choices otherwise."""
        try:
            return cls(value.strip().upper())
        except ValueError:
            choices = ", ".join(level.value for level in cls)
            raise ValueError(f"unknown log level {value!r}: one of {choices}") from None


def _level_of(value: object) -> object:
    return LogLevel.parse(value) if isinstance(value, str) else value


# A setting's level: any case is accepted, anything but a real level is refused at start-up.
LogLevelSetting = Annotated[LogLevel, BeforeValidator(_level_of)]


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Adds fields to every log line written inside the block (and tasks it starts)."""
    token = _context.set({**_context.get(), **{k: v for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            setattr(record, key, str(value))
        return True


def utc_timestamp(created: float) -> str:
    """ISO 8601 in UTC to the millisecond, with the `Z` suffix."""
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _UtcTimes(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_timestamp(record.created)


class _ConsoleFormatter(_UtcTimes):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{k}={v}" for k, v in _context.get().items())
        return f"{line} {extras}" if extras else line


class _JsonFormatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_timestamp(record.created)

    def process_log_record(self, log_record: dict[str, Any]) -> dict[str, Any]:
        # uvicorn's coloured twin of the message: the plain one is already there.
        log_record.pop("color_message", None)
        for key, value in log_record.items():
            if isinstance(value, str) and "\x1b" in value:
                log_record[key] = _ANSI_ESCAPE.sub("", value)
        return log_record


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Spoc's logging for the whole process (uvicorn's loggers included: they propagate here).

    Raises ValueError for a level that is not one of LogLevel."""
    chosen = LogLevel.parse(level)
    use_json = (not sys.stderr.isatty()) if json is None else json
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    formatter: logging.Formatter
    if use_json:
        formatter = _JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    else:
        formatter = _ConsoleFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(chosen.value)
    # uvicorn configures its own loggers only when given a log_config; Spoc passes none, so
    # make sure theirs write through ours (no second, coloured handler of their own).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # aio-pika's reconnect chatter and uvicorn's access lines drown the service's own story.
    logging.getLogger("aiormq").setLevel("WARNING")
    logging.getLogger("aio_pika").setLevel("WARNING")
    logging.getLogger("uvicorn.access").setLevel("WARNING")
