"""Migrations started at the same moment on one fresh PostgreSQL database, as pods starting
together do with their migrate init containers: every one succeeds and the schema is right."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text

from spoc_intake.models import Base
from spoc_platform.db import create_engine
from tests.support import create_postgres_database, drop_postgres_database

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

STARTED_TOGETHER = 4

# One pod's `spoc migrate intake`, through the real command line, in a process of its own. It
# loads everything first, says so, and waits for the word to go: the four then reach their
# first statement together, however long each took to start.
MIGRATE_ON_CUE = """
import sys, time
from pathlib import Path

import spoc.services, spoc.progress, spoc_platform.migrations  # noqa: F401 - loaded before the cue
from spoc.cli import app

ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.002)
app(["migrate", "intake"], prog_name="spoc")
"""


def _migrate_together(url: str, cues: Path) -> list[subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOC_")}
    env["SPOC_INTAKE_DATABASE_URL"] = url
    go = cues / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_ON_CUE, str(cues / f"ready-{i}"), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(STARTED_TOGETHER)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(cues.glob("ready-*"))) < STARTED_TOGETHER:
            assert time.monotonic() < deadline, "the migrations never got ready to start"
            assert all(w.poll() is None for w in workers), "a migration ended before its cue"
            time.sleep(0.01)
        go.touch()
        finished = []
        for worker in workers:
            out, err = worker.communicate(timeout=120)
            finished.append(subprocess.CompletedProcess(worker.args, worker.returncode, out, err))
        return finished
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def _schema_state(connection: Connection) -> tuple[list[object], list[str]]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    versions = [
        row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))
    ]
    return list(compare_metadata(context, Base.metadata)), versions


def test_migrations_started_together_on_a_fresh_database_all_succeed(tmp_path: Path) -> None:
    url = asyncio.run(create_postgres_database("spoc_test_race"))
    try:
        done = _migrate_together(url, tmp_path)
        failed = [f"exit {d.returncode}:\n{d.stderr}" for d in done if d.returncode != 0]
        assert not failed, "\n".join(failed)
        assert all("intake: database at head" in d.stderr for d in done)

        async def inspect() -> tuple[list[object], list[str]]:
            engine = create_engine(url)
            try:
                async with engine.connect() as conn:
                    return await conn.run_sync(_schema_state)
            finally:
                await engine.dispose()

        differences, versions = asyncio.run(inspect())
        assert differences == []
        assert len(versions) == 1
    finally:
        asyncio.run(drop_postgres_database(url))
