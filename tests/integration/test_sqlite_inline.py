"""The inline SQLite connection keeps the slice of aiosqlite's API that SQLAlchemy relies on."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import column, select, table, text
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection

from spoc_platform import sqlite_inline
from spoc_platform.db import create_engine

pytestmark = pytest.mark.integration


async def test_a_streamed_result_yields_every_row_in_the_batches_asked_for(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'service.sqlite3'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE note (n INTEGER)"))
        await conn.execute(text("INSERT INTO note VALUES (:n)"), [{"n": n} for n in range(7)])

    async with engine.connect() as conn:
        result = await conn.stream(text("SELECT n FROM note ORDER BY n"))
        batches = [[row.n for row in batch] async for batch in result.partitions(3)]
    await engine.dispose()

    assert batches == [[0, 1, 2], [3, 4, 5], [6]]


async def test_fetchmany_returns_as_many_rows_as_asked_or_the_cursor_s_arraysize(
    tmp_path: Path,
) -> None:
    connection = await sqlite_inline.connect(str(tmp_path / "service.sqlite3"))
    try:
        cursor = connection.cursor()
        await cursor.execute("CREATE TABLE note (n INTEGER)")
        await cursor.executemany("INSERT INTO note VALUES (?)", ((n,) for n in range(6)))
        await cursor.execute("SELECT n FROM note ORDER BY n")

        assert await cursor.fetchmany(3) == [(0,), (1,), (2,)]
        assert await cursor.fetchmany() == [(3,)]  # arraysize, 1 as in DB-API
        cursor.arraysize = 2
        assert await cursor.fetchmany() == [(4,), (5,)]
        await cursor.close()
    finally:
        await connection.close()


async def test_a_stopped_connection_lets_go_of_its_lock_and_refuses_further_work(
    tmp_path: Path,
) -> None:
    database = tmp_path / "service.sqlite3"
    connection = await sqlite_inline.connect(str(database))
    cursor = connection.cursor()
    await cursor.execute("CREATE TABLE note (body TEXT)")
    await cursor.execute("BEGIN IMMEDIATE")  # holds the write lock, as a busy transaction does
    await cursor.execute("INSERT INTO note VALUES ('never committed')")

    # What SQLAlchemy calls when it terminates a connection it cannot close gracefully.
    connection.stop()
    connection.stop()  # a second stop is harmless

    other = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # the lock is free at once
        assert other.execute("SELECT count(*) FROM note").fetchone() == (0,)
        other.execute("COMMIT")
    finally:
        other.close()
    with pytest.raises(ValueError, match="Connection closed"):
        connection.cursor()


def sqlite_error(message: str, code: int) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code  # as sqlite3 sets it on the errors it raises
    return error


class Clock:
    """time.monotonic and asyncio.sleep for `patiently`: each pause is recorded and moves the
    clock by exactly its length, so the deadline falls where the schedule says."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, pause: float) -> None:
        assert len(self.pauses) < 100, f"no end to the waits: {self.pauses[-3:]}"
        self.pauses.append(pause)
        self.now += pause


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(sqlite_inline, "time", clock)
    monkeypatch.setattr(sqlite_inline, "asyncio", clock)
    return clock


async def test_a_locked_database_is_tried_again_with_doubling_pauses_until_the_patience_is_spent(
    clock: Clock,
) -> None:
    attempts = 0

    def locked() -> None:
        nonlocal attempts
        attempts += 1
        raise sqlite_error("database is locked", sqlite3.SQLITE_BUSY)

    # 1, 2, 4, … ms up to 50 ms; the patience ends exactly at the end of the eighth pause.
    schedule = [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.05, 0.05]
    patience = 0.0
    for pause in schedule:
        patience += pause
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        await sqlite_inline.patiently(locked, patience=patience)

    assert clock.pauses == schedule
    assert attempts == 1 + len(schedule)  # no attempt once the patience is spent


async def test_a_lock_that_passes_within_the_patience_lets_the_work_through(clock: Clock) -> None:
    answers = iter([sqlite3.SQLITE_BUSY, sqlite3.SQLITE_BUSY | (5 << 8), None])

    def busy_twice() -> str:
        code = next(answers)
        if code is not None:
            raise sqlite_error("database is locked", code)  # SQLITE_BUSY and an extended code
        return "done"

    assert await sqlite_inline.patiently(busy_twice) == "done"
    assert clock.pauses == [0.001, 0.002]


@pytest.mark.parametrize(
    "error",
    [
        sqlite_error("no such table: note", sqlite3.SQLITE_ERROR),
        # SQLITE_BUSY_SNAPSHOT: the transaction read an older snapshot and can never write.
        sqlite_error("database is locked", sqlite3.SQLITE_BUSY | (2 << 8)),
    ],
)
async def test_an_error_waiting_cannot_cure_is_raised_at_once(
    clock: Clock, error: sqlite3.OperationalError
) -> None:
    attempts = 0

    def failing() -> None:
        nonlocal attempts
        attempts += 1
        raise error

    with pytest.raises(sqlite3.OperationalError) as raised:
        await sqlite_inline.patiently(failing)
    assert raised.value is error
    assert (attempts, clock.pauses) == (1, [])


async def test_a_connection_never_lets_sqlite_wait_and_serves_any_thread_with_its_options(
    tmp_path: Path,
) -> None:
    # check_same_thread as SQLAlchemy's dialect may pass it: taken, and overruled.
    connection = await sqlite_inline.connect(
        str(tmp_path / "service.sqlite3"), check_same_thread=True, isolation_level=None
    )
    try:
        cursor = connection.cursor()
        await cursor.execute("PRAGMA busy_timeout")
        # SQLite's busy handler would sleep on the event loop's thread (see sqlite_inline).
        assert await cursor.fetchone() == (0,)
        assert connection.isolation_level is None  # the caller's options reach sqlite3
        # Pooled connections may be closed from another thread (at interpreter exit).
        used_elsewhere = await asyncio.to_thread(
            lambda: connection._open().execute("SELECT 1").fetchone()
        )
        assert used_elsewhere == (1,)
    finally:
        await connection.close()


async def test_sqlalchemy_s_regexp_works_even_in_an_index(tmp_path: Path) -> None:
    """The dialect registers REGEXP on each connection, as deterministic (so usable where SQLite
    requires it, such as an index): both reach sqlite3 through the inline connection."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'service.sqlite3'}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE note (body TEXT)"))
            await conn.execute(text("CREATE INDEX ix_note_spoc ON note (regexp('spoc', body))"))
            await conn.execute(text("INSERT INTO note VALUES ('a spoc note'), ('another')"))
            found = await conn.execute(
                select(column("body"))
                .select_from(table("note"))
                .where(column("body").regexp_match("spoc"))
            )
            assert found.scalars().all() == ["a spoc note"]
    finally:
        await engine.dispose()


def test_a_closed_connection_is_refused_in_words_sqlalchemy_reads_as_a_lost_connection() -> None:
    connection = sqlite_inline.InlineConnection(sqlite3.connect(":memory:"))
    connection.stop()
    with pytest.raises(ValueError) as raised:
        connection.cursor()
    # SQLAlchemy's aiosqlite dialect turns exactly these words into a disconnect.
    dbapi = SimpleNamespace(sqlite=sqlite3)
    with pytest.raises(sqlite3.OperationalError) as translated:
        AsyncAdapt_aiosqlite_connection._handle_exception_no_connection(dbapi, raised.value)
    assert str(translated.value) == "Connection closed"


async def test_a_closed_connection_lets_go_of_its_file_and_refuses_further_work(
    tmp_path: Path,
) -> None:
    database = tmp_path / "service.sqlite3"
    connection = await sqlite_inline.connect(str(database))
    cursor = connection.cursor()
    await cursor.execute("CREATE TABLE note (body TEXT)")
    await cursor.execute("BEGIN IMMEDIATE")
    await cursor.execute("INSERT INTO note VALUES ('never committed')")

    await connection.close()  # what SQLAlchemy's pool calls for a graceful close
    await connection.close()  # a second close is harmless

    other = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # the lock is free at once
        assert other.execute("SELECT count(*) FROM note").fetchone() == (0,)
        other.execute("COMMIT")
    finally:
        other.close()
    with pytest.raises(ValueError, match="Connection closed"):
        connection.cursor()
