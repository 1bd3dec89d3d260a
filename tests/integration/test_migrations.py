"""Each service's Alembic history builds exactly the schema its models describe."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect

from spoc.services import SERVICES, ServiceName
from spoc_platform.db import create_engine
from spoc_platform.migrations import downgrade, upgrade

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
