"""The one topology definition agrees with what each service can handle."""

from __future__ import annotations

from pathlib import Path

import pytest

from spoc.services import SERVICES, ServiceName
from spoc_contracts.registry import REGISTRY
from spoc_contracts.topology import SUBSCRIPTIONS

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", list(ServiceName))
def test_each_service_handles_exactly_what_its_queue_is_bound_to(
    name: ServiceName, tmp_path: Path
) -> None:
    entry = SERVICES[name]
    settings = entry.settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.sqlite3'}")
    runtime = entry.bootstrap(settings).runtime
    assert set(runtime.consumer.event_types) == set(SUBSCRIPTIONS[name.value])
    assert runtime.queue.bindings == SUBSCRIPTIONS[name.value]
    # Every service declares every subscriber's queue, not only its own.
    assert {spec.service for spec in runtime.topology} == set(SUBSCRIPTIONS)


def test_every_bound_type_is_a_known_event() -> None:
    known = {event_type for event_type, _ in REGISTRY}
    for bindings in SUBSCRIPTIONS.values():
        assert set(bindings) <= known
