"""SQLite runs on the event loop's thread; waiting for another process's lock must not freeze it."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from spoc_platform.db import create_engine

pytestmark = pytest.mark.integration

HOLD_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
connection.execute("INSERT INTO note VALUES ('from the other process')")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
"""


class Ticker:
    """Measures how late the event loop wakes a 10 ms sleeper: its lag is everyone's."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None
        self._ticking = asyncio.Event()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            self._ticking.set()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, loop.time() - before - 0.01)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await self._ticking.wait()

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_a_write_waiting_for_another_process_s_lock_leaves_the_event_loop_free(
    tmp_path: Path,
) -> None:
    database = tmp_path / "service.sqlite3"
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE note (body TEXT)"))
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLD_LOCK, str(database), "2", stdout=asyncio.subprocess.PIPE
    )
    assert other.stdout is not None
    assert await asyncio.wait_for(other.stdout.readline(), 10) == b"locked\n"
    ticker = Ticker()
    await ticker.start()

    started = time.monotonic()
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO note VALUES ('from this loop')"))
    waited = time.monotonic() - started
    await ticker.stop()

    assert await other.wait() == 0
    assert waited > 1.0  # it did wait for the other process's commit ...
    assert ticker.worst < 0.1  # ... while the loop went on serving everything else
    async with engine.connect() as conn:
        bodies = (await conn.execute(text("SELECT body FROM note ORDER BY rowid"))).scalars()
        assert list(bodies) == ["from the other process", "from this loop"]
    await engine.dispose()


async def test_a_lock_held_longer_than_the_patience_fails_as_a_database_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from spoc_platform import sqlite_inline
    from spoc_platform.db import is_outage

    monkeypatch.setattr(sqlite_inline, "LOCK_PATIENCE", 0.3)
    database = tmp_path / "service.sqlite3"
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE note (body TEXT)"))
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLD_LOCK, str(database), "2", stdout=asyncio.subprocess.PIPE
    )
    assert other.stdout is not None
    assert await asyncio.wait_for(other.stdout.readline(), 10) == b"locked\n"

    started = time.monotonic()
    with pytest.raises(OperationalError, match="database is locked") as raised:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO note VALUES ('from this loop')"))

    assert time.monotonic() - started < 1.5
    assert is_outage(raised.value)  # consumers hold the event; HTTP answers 503
    assert await other.wait() == 0
    await engine.dispose()
