"""The inline SQLite connection keeps the slice of aiosqlite's API that SQLAlchemy relies on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

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
