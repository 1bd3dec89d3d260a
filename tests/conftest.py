"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support import (
    IN_CI,
    RabbitAdmin,
    create_postgres_database,
    drop_postgres_database,
    new_rabbit_vhost,
)


@pytest.fixture
def rabbit() -> Iterator[RabbitAdmin]:
    """A RabbitMQ vhost of this test's own, deleted afterwards."""
    admin = new_rabbit_vhost()
    try:
        yield admin
    finally:
        admin.delete()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database of this test's own, dropped afterwards."""
    url = await create_postgres_database("spoc_test")
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'service.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Runs the test once on SQLite and once on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'service.sqlite3'}"
        return
    url = await create_postgres_database("spoc_test")
    try:
        yield url
    finally:
        await drop_postgres_database(url)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: every layer must really run against real servers."""
    if not IN_CI:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter:
            reporter.write_line(f"CI=true: {skipped} test(s) skipped; failing the run", red=True)
