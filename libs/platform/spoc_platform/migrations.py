"""Alembic, one history per service: shared env.py logic and a programmatic upgrade."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData
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


def upgrade(migrations_dir: Path, database_url: str, revision: str = "head") -> None:
    """Bring a service's database to `revision` (blocks until done, even inside a loop)."""
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    config = alembic_config(migrations_dir, database_url)
    _outside_any_loop(lambda: command.upgrade(config, revision))


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
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(url: str, target_metadata: MetaData) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure_and_run, target_metadata)
            await connection.commit()
    finally:
        await engine.dispose()
