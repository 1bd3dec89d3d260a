"""Progress of long-running commands: a bar in a terminal, plain lines otherwise.

A person at a terminal sees one live bar per task (rich); a log collector, a CI job or a pipe
gets one line per step instead, which reads well afterwards and carries no escape codes."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TextIO


class Steps(Protocol):
    """What a command reports as it goes."""

    def total(self, count: int | None) -> None:
        """How many steps there are, once known (None: unknown)."""

    def advance(self, count: int = 1, note: str = "") -> None:
        """`count` more steps done; `note` says which (a revision, an id)."""


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@contextmanager
def progress(
    description: str, total: int | None = None, *, stream: TextIO | None = None
) -> Iterator[Steps]:
    """Reports the steps of one task on `stream` (standard error by default)."""
    out = stream if stream is not None else sys.stderr
    if is_terminal(out):
        with _bar(description, total, out) as steps:
            yield steps
    else:
        lines = _Lines(description, total, out)
        yield lines
        lines.finish()


class _Lines:
    """`description: 3/10 note` per step, and a last line with the time it took."""

    def __init__(self, description: str, total: int | None, out: TextIO) -> None:
        self.description = description
        self.count = 0
        self.expected = total
        self.out = out
        self.started = time.monotonic()

    def total(self, count: int | None) -> None:
        self.expected = count

    def advance(self, count: int = 1, note: str = "") -> None:
        self.count += count
        of = f"/{self.expected}" if self.expected is not None else ""
        self._say(f"{self.description}: {self.count}{of}" + (f" {note}" if note else ""))

    def finish(self) -> None:
        self._say(
            f"{self.description}: done, {self.count} in {time.monotonic() - self.started:.1f} s"
        )

    def _say(self, line: str) -> None:
        print(line, file=self.out, flush=True)


class _Bar:
    def __init__(self, bar: Any, task: Any) -> None:
        self._bar = bar
        self._task = task

    def total(self, count: int | None) -> None:
        self._bar.update(self._task, total=count)

    def advance(self, count: int = 1, note: str = "") -> None:
        self._bar.update(self._task, advance=count, note=note)


@contextmanager
def _bar(description: str, total: int | None, out: TextIO) -> Iterator[Steps]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
    )
    with Progress(*columns, console=Console(file=out)) as bar:
        yield _Bar(bar, bar.add_task(description, total=total, note=""))
