"""Typed settings that fail fast (STYLE example 4)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from spoc_intake.settings import IntakeSettings
from spoc_notify.settings import NotifySettings
from spoc_routing.settings import RoutingSettings

pytestmark = pytest.mark.unit


def test_each_service_reads_its_own_prefix_and_the_shared_broker_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPOC_AMQP_URL", "amqp://spoc:secret@rabbit:5672/spoc")
    monkeypatch.setenv("SPOC_ROUTING_DATABASE_URL", "postgresql+asyncpg://r@db/spoc_routing")
    monkeypatch.setenv("SPOC_INTAKE_DATABASE_URL", "postgresql+asyncpg://i@db/spoc_intake")
    monkeypatch.setenv("SPOC_ROUTING_PREFETCH", "7")

    routing, intake = RoutingSettings(), IntakeSettings()

    assert routing.database_url.endswith("spoc_routing") and routing.prefetch == 7
    assert intake.database_url.endswith("spoc_intake") and intake.prefetch == 32
    assert routing.amqp_url == intake.amqp_url == "amqp://spoc:secret@rabbit:5672/spoc"


def test_a_service_without_a_database_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPOC_NOTIFY_DATABASE_URL", raising=False)
    with pytest.raises(ValidationError, match="SPOC_<SERVICE>_DATABASE_URL"):
        NotifySettings()


def test_production_refuses_the_default_broker_credentials() -> None:
    with pytest.raises(ValidationError, match="default RabbitMQ credentials"):
        RoutingSettings(database_url="sqlite+aiosqlite:///x", environment="production")
    RoutingSettings(
        database_url="sqlite+aiosqlite:///x",
        environment="production",
        amqp_url="amqp://spoc:long-secret@rabbit/spoc",
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("prefetch", 0), ("delivery_limit", 0), ("bus", "kafka"), ("number_prefix", "sd lower")],
)
def test_nonsense_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        IntakeSettings(database_url="sqlite+aiosqlite:///x", **{field: value})
