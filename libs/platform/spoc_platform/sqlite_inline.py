"""SQLite for SQLAlchemy's asyncio engine, run on the event loop's own thread.

aiosqlite hands every statement to a worker thread and back. Under load each hop waits for the
GIL and for a turn of the busy event loop — measured here at 3–12 ms a statement — while the
statement itself takes tens of microseconds. With one connection per database and one process
per file (the embedded default, tests), running statements inline is both faster and simpler.
The objects below offer the slice of aiosqlite's API that SQLAlchemy's aiosqlite dialect uses,
so the dialect, its SQL and its types are unchanged; only where the work runs differs.

Inline has one danger: SQLite's busy handler sleeps in the calling thread, so a write waiting
for another process's lock (a backup, an sqlite3 shell, a second `spoc up`) would freeze all
four services on the loop (1.9 s measured). Here SQLite never waits (busy timeout 0): a
statement that finds the database locked is tried again after an asyncio sleep, with back-off,
for up to LOCK_PATIENCE seconds; meanwhile the loop serves everything else."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

IsolationLevel = Literal["DEFERRED", "EXCLUSIVE", "IMMEDIATE"] | None
T = TypeVar("T")

# How long a statement waits for another process's lock before failing "database is locked"
# (an outage to consumers, who hold the event and try again; a 503 to HTTP callers).
LOCK_PATIENCE = 10.0
_FIRST_PAUSE = 0.001
_LONGEST_PAUSE = 0.05


async def patiently(work: Callable[[], T], *, patience: float | None = None) -> T:
    """Runs `work` (a call into sqlite3), awaiting and retrying while the database is locked.

    Safe to retry: a busy statement did nothing (in WAL mode only taking the write lock waits,
    at a transaction's first write, before anything is changed)."""
    try:
        return work()
    except sqlite3.OperationalError as error:
        if not _is_busy(error):
            raise
    deadline = time.monotonic() + (LOCK_PATIENCE if patience is None else patience)
    pause = _FIRST_PAUSE
    while True:
        await asyncio.sleep(pause)
        try:
            return work()
        except sqlite3.OperationalError as error:
            if not _is_busy(error) or time.monotonic() >= deadline:
                raise
        pause = min(pause * 2, _LONGEST_PAUSE)


def _is_busy(error: sqlite3.OperationalError) -> bool:
    """Another connection holds a lock ("database is locked"). Not SQLITE_BUSY_SNAPSHOT: a
    transaction that read an older snapshot can never write; only starting over helps."""
    code: int = error.sqlite_errorcode
    return code & 0xFF == sqlite3.SQLITE_BUSY and code != _BUSY_SNAPSHOT


_BUSY_SNAPSHOT = sqlite3.SQLITE_BUSY | (2 << 8)


class InlineCursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        await patiently(lambda: self._cursor.execute(sql, parameters))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        rows = list(parameters)  # an iterator would be spent by a first, busy attempt
        await patiently(lambda: self._cursor.executemany(sql, rows))
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class InlineConnection:
    def __init__(self, connection: sqlite3.Connection) -> None:
        # The dialect looks for `_connection` to tell an open connection from a closed one.
        self._connection: sqlite3.Connection | None = connection
        self._conn = connection

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("Connection closed")
        return self._connection

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._open().cursor())

    @property
    def isolation_level(self) -> str | None:
        return self._open().isolation_level

    @isolation_level.setter
    def isolation_level(self, value: IsolationLevel) -> None:
        self._open().isolation_level = value

    async def create_function(
        self, name: str, arity: int, function: Callable[..., Any], **options: Any
    ) -> None:
        self._open().create_function(name, arity, function, **options)

    async def commit(self) -> None:
        connection = self._open()
        await patiently(connection.commit)

    async def rollback(self) -> None:
        self._open().rollback()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


async def connect(database: str, **options: Any) -> InlineConnection:
    """What SQLAlchemy calls (through `async_creator`) for each new pooled connection."""
    options.pop("check_same_thread", None)
    # SQLite's own busy handler would sleep on the loop's thread: never wait there (see above).
    options["timeout"] = 0
    # Pooled connections may be closed from another thread at interpreter exit.
    return InlineConnection(sqlite3.connect(database, check_same_thread=False, **options))
