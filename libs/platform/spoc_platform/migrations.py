"""Alembic, one history per service: shared env.py logic and a programmatic upgrade."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool


def alembic_config(migrations_dir: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("path_separator", "os")
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("version_locations", str(migrations_dir / "versions"))
    # ConfigParser interpolation would eat a '%' in a password.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["database_url"] = database_url
    return config


class MigrationSteps(Protocol):
    """Told how many revisions an upgrade will apply, then of each one applied."""

    def total(self, count: int | None) -> None: ...

    def advance(self, count: int = 1, note: str = "") -> None: ...


_STEPS = "spoc_migration_steps"


def upgrade(
    migrations_dir: Path,
    database_url: str,
    revision: str = "head",
    *,
    steps: MigrationSteps | None = None,
) -> None:
    """Bring a service's database to `revision` (blocks until done, even inside a loop).

    `steps` hears how many revisions are pending, then of each as it is applied: one revision
    of a big database can take minutes, and the person waiting should see which one runs."""
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    config = alembic_config(migrations_dir, database_url)
    if steps is not None:
        config.attributes[_STEPS] = steps
    _outside_any_loop(lambda: command.upgrade(config, revision))


@contextmanager
def alembic_quiet() -> Iterator[None]:
    """Alembic's INFO lines (one per revision and database, and two about the dialect) left
    out for the block; its warnings still show. For start-ups that report progress their own
    way, such as the embedded default migrating four databases before its banner."""
    logger = logging.getLogger("alembic")
    before = logger.level
    logger.setLevel(max(logging.WARNING, before))
    try:
        yield
    finally:
        logger.setLevel(before)


def downgrade(migrations_dir: Path, database_url: str, revision: str) -> None:
    config = alembic_config(migrations_dir, database_url)
    _outside_any_loop(lambda: command.downgrade(config, revision))


def _outside_any_loop(work: Callable[[], None]) -> None:
    """env.py runs its own event loop, which cannot nest in a running one: use a thread then."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        work()
        return
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(error)

    worker = threading.Thread(target=run, name="alembic")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]


def run_env(target_metadata: MetaData) -> None:
    """The body of every service's env.py."""
    url = context.config.attributes.get("database_url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if context.is_offline_mode():
        context.configure(
            url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(str(url), target_metadata))


def _configure_and_run(connection: Connection, target_metadata: MetaData) -> None:
    # For `alembic revision --autogenerate` only (running migrations ignores both): new
    # migrations come out in batch mode, which SQLite needs to alter a table, and notice
    # column type changes.
    steps: MigrationSteps | None = context.config.attributes.get(_STEPS)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        on_version_apply=_reporting_to(steps) if steps is not None else None,
    )
    if steps is not None:
        steps.total(_pending_revisions())
    with context.begin_transaction():
        context.run_migrations()


def _pending_revisions() -> int:
    """How many revisions lie between the database's and the upgrade's destination."""
    current = context.get_context().get_current_heads()
    destination = context.get_revision_argument()
    revisions = context.script.revision_map.iterate_revisions(destination, current or None)
    return sum(1 for _ in revisions)


def _reporting_to(steps: MigrationSteps) -> Callable[..., None]:
    def applied(*, step: Any, **_: Any) -> None:
        revision = step.up_revision
        steps.advance(note=f"{revision.revision} {revision.doc or ''}".strip())

    return applied


# One upgrade at a time per database: pods starting together (each with its migrate init
# container) or a deploy step beside them would otherwise race to create the same tables and
# all but one fail. PostgreSQL advisory locks are scoped to one database, so one key serves
# every service. The digits spell "spoc" in ASCII.
MIGRATION_LOCK_KEY = 0x73706F63


async def _run_online(url: str, target_metadata: MetaData) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                # Held until the commit below: whoever waited then finds the schema at head and
                # has nothing left to do. (SQLite serialises writers by itself.)
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            await connection.run_sync(_configure_and_run, target_metadata)
            await connection.commit()
    finally:
        await engine.dispose()
