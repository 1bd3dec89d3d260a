"""Each service's Alembic history builds exactly the schema its models describe."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, String, UniqueConstraint, inspect

from spoc.services import SERVICES, ServiceName
from spoc_platform.db import create_engine, new_metadata
from spoc_platform.messaging_tables import define_messaging_tables
from spoc_platform.migrations import alembic_config, downgrade, upgrade

pytestmark = pytest.mark.integration

MODELS = {
    ServiceName.intake: "spoc_intake.models",
    ServiceName.routing: "spoc_routing.models",
    ServiceName.sla: "spoc_sla.models",
    ServiceName.notify: "spoc_notify.models",
}


def _differences(connection: Connection, service: ServiceName) -> list[object]:
    import importlib

    metadata = importlib.import_module(MODELS[service]).Base.metadata
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


@pytest.mark.parametrize("service", list(ServiceName))
async def test_migrations_match_the_models_and_can_be_undone(
    database_url: str, service: ServiceName
) -> None:
    migrations = SERVICES[service].migrations
    upgrade(migrations, database_url)
    upgrade(migrations, database_url)  # again: nothing to do, no error

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences, service) == []
            assert {"outbox", "inbox", "event_sequence"} <= await conn.run_sync(_tables)

        downgrade(migrations, database_url, "base")
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) <= {"alembic_version"}
    finally:
        await engine.dispose()


def test_a_sqlite_database_is_created_with_its_directory_even_with_a_percent_in_its_path(
    tmp_path: Path,
) -> None:
    """Outside any event loop (as `spoc migrate` runs): the file's directory is made, and a
    '%' in the path is not read as configuration interpolation."""
    database = tmp_path / "data 100%" / "new" / "routing.sqlite3"
    url = f"sqlite+aiosqlite:///{database}"

    upgrade(SERVICES[ServiceName.routing].migrations, url)

    assert database.exists()
    with sqlite3.connect(database) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        [(version,)] = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {"outbox", "inbox", "alembic_version"} <= tables
    heads = ScriptDirectory.from_config(
        alembic_config(SERVICES[ServiceName.routing].migrations, url)
    ).get_heads()
    assert [version] == heads


async def test_a_migration_that_fails_inside_a_running_loop_raises_in_the_caller(
    sqlite_url: str,
) -> None:
    with pytest.raises(CommandError, match="no-such-revision"):
        upgrade(SERVICES[ServiceName.routing].migrations, sqlite_url, "no-such-revision")


def test_the_offline_sql_of_a_history_has_its_data_changes_with_their_values_inline(
    tmp_path: Path,
) -> None:
    """`alembic upgrade --sql` for a DBA who applies the script by hand: every statement can
    run as printed, with no placeholders left for values."""
    migrations = SERVICES[ServiceName.notify].migrations
    config = alembic_config(migrations, f"sqlite+aiosqlite:///{tmp_path / 'notify.sqlite3'}")
    printed = io.StringIO()
    config.output_buffer = printed

    command.upgrade(config, "head", sql=True)

    sql = printed.getvalue()
    assert "CREATE TABLE outbox" in sql
    assert "UPDATE delivery SET message='' WHERE delivery.status = 'failed';" in sql
    assert "UPDATE ticket_contact SET updated_at='" in sql
    [head] = ScriptDirectory.from_config(config).get_heads()
    assert f"SET version_num='{head}'" in sql
    assert not (tmp_path / "notify.sqlite3").exists(), "the offline run touched a database"


def _messaging_differences(connection: Connection) -> list[object]:
    # Built here, not at import: a mutation tool switches a mutant on per test, after the
    # services' models were imported, so only tables defined inside a test can show it.
    fresh = new_metadata()
    define_messaging_tables(fresh)

    def messaging(thing: Any, name: str | None, kind: str, *_: Any) -> bool:
        table = name if kind == "table" else getattr(getattr(thing, "table", None), "name", None)
        return table in fresh.tables

    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_object": messaging}
    )
    return list(compare_metadata(context, fresh))


def _messaging_shape(connection: Connection) -> tuple[dict[str, object], dict[str, object]]:
    """What Alembic's comparison does not look at, as defined and as built: each column's
    nullability and string length, and the names of keys, unique constraints and indexes."""
    fresh = new_metadata()
    define_messaging_tables(fresh)
    built = inspect(connection)
    defined: dict[str, object] = {}
    found: dict[str, object] = {}
    for table in fresh.tables.values():
        # Unique keys as a set: PostgreSQL reports a unique constraint as an index too.
        defined[table.name] = (
            # nullable=None renders NOT NULL, as False does: the same column, not a difference.
            {c.name: (c.nullable is True, getattr(c.type, "length", None)) for c in table.columns},
            table.primary_key.name,
            {
                (u.name, tuple(c.name for c in u.columns))
                for u in table.constraints
                if isinstance(u, UniqueConstraint)
            }
            | {(i.name, tuple(c.name for c in i.columns)) for i in table.indexes if i.unique},
            sorted(
                (i.name, tuple(c.name for c in i.columns)) for i in table.indexes if not i.unique
            ),
        )
        # Lengths of strings only (SQLite reflects a UUID as CHAR(32)).
        strings = {c.name for c in table.columns if isinstance(c.type, String)}
        columns = built.get_columns(table.name)
        found[table.name] = (
            {
                c["name"]: (c["nullable"], c["type"].length if c["name"] in strings else None)
                for c in columns
            },
            built.get_pk_constraint(table.name)["name"],
            {
                (u["name"], tuple(u["column_names"]))
                for u in built.get_unique_constraints(table.name)
            }
            | {
                (i["name"], tuple(i["column_names"]))
                for i in built.get_indexes(table.name)
                if i["unique"]
            },
            sorted(
                (i["name"], tuple(i["column_names"]))
                for i in built.get_indexes(table.name)
                if not i["unique"]
            ),
        )
    return defined, found


async def test_the_messaging_tables_as_defined_now_are_what_every_migration_history_builds(
    database_url: str,
) -> None:
    for service in ServiceName:
        migrations = SERVICES[service].migrations
        upgrade(migrations, database_url)
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                assert await conn.run_sync(_messaging_differences) == [], service
                defined, found = await conn.run_sync(_messaging_shape)
                assert defined == found, service
        finally:
            await engine.dispose()
        downgrade(migrations, database_url, "base")
