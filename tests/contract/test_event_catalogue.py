"""The event catalogue: checked in, current, and only ever growing."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from spoc_contracts import REGISTRY, Envelope, InvalidEnvelope, open_envelope
from spoc_contracts.catalogue import breaking_changes, build_catalogue, render_catalogue

pytestmark = pytest.mark.contract
CATALOGUE = Path(__file__).parents[2] / "docs" / "events" / "catalogue.json"


def checked_in() -> dict[str, Any]:
    return dict(json.loads(CATALOGUE.read_text(encoding="utf-8")))


def test_the_checked_in_catalogue_is_what_the_code_generates() -> None:
    assert CATALOGUE.read_text(encoding="utf-8") == render_catalogue(), (
        "docs/events/catalogue.json is stale: run `spoc contracts write`"
    )


def test_the_code_only_adds_to_the_checked_in_catalogue() -> None:
    assert breaking_changes(checked_in(), build_catalogue()) == []


def test_the_catalogue_names_every_event_of_the_architecture() -> None:
    assert set(build_catalogue()["events"]) == {
        f"{name}.v1"
        for name in (
            "ticket.created",
            "ticket.updated",
            "ticket.commented",
            "ticket.status_changed",
            "ticket.escalation_requested",
            "feedback.submitted",
            "ticket.routed",
            "ticket.assigned",
            "ticket.escalated",
            "sla.clock_started",
            "sla.clock_updated",
            "sla.warning",
            "sla.breached",
            "sla.met",
            "notification.sent",
            "notification.failed",
        )
    } | {"ticket.created.v2"}  # the access key sealed to notify (v1 stays for messages in flight)


def _event(doc: dict[str, Any], key: str = "ticket.created.v1") -> dict[str, Any]:
    return dict(doc["events"][key]["schema"])


def test_adding_an_optional_field_is_additive() -> None:
    new = copy.deepcopy(checked_in())
    _event(new)["properties"]["mood"] = {"type": "string"}
    assert breaking_changes(checked_in(), new) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s["properties"].pop("subject"), "ticket.created.v1.subject: field removed"),
        (
            lambda s: s["properties"].__setitem__("subject", {"type": "integer"}),
            "ticket.created.v1.subject: type changed",
        ),
        (
            lambda s: (
                s["properties"].__setitem__("mood", {"type": "string"}),
                s["required"].append("mood"),
            ),
            "ticket.created.v1.mood: newly required",
        ),
    ],
    ids=["removed field", "changed type", "new required field"],
)
def test_a_non_additive_change_is_reported(change: Any, expected: str) -> None:
    new = copy.deepcopy(checked_in())
    change(new["events"]["ticket.created.v1"]["schema"])
    problems = breaking_changes(checked_in(), new)
    assert any(p.startswith(expected) for p in problems), problems


def test_a_removed_event_and_a_changed_nested_field_are_reported() -> None:
    new = copy.deepcopy(checked_in())
    del new["events"]["sla.met.v1"]
    defs = new["events"]["ticket.created.v1"]["schema"]["$defs"]["Requester"]["properties"]
    defs["email"] = {"type": "integer"}
    problems = breaking_changes(checked_in(), new)
    assert any(p.startswith("sla.met.v1: event removed") for p in problems)
    assert any(p.startswith("ticket.created.v1.requester.email: type changed") for p in problems)


def test_every_event_is_frozen_and_versioned() -> None:
    for (event_type, version), cls in REGISTRY.items():
        assert cls.TYPE == event_type and cls.VERSION == version >= 1
        assert cls.model_config.get("frozen") is True
        assert cls.model_config.get("extra") == "ignore"


def _created_envelope() -> Envelope:
    from spoc_contracts import Requester, TicketCreated

    event = TicketCreated(
        number="SD-000001",
        subject="s",
        description="d",
        type="incident",
        channel="api",
        requester=Requester(name="n", email="n@example.org"),
        created_at=datetime.now(UTC),
        access_key_sealed="c2VhbGVk",
    )
    return Envelope.wrap(event, source="intake", ticket_id=uuid.uuid4(), sequence=1)


def test_an_envelope_survives_the_wire_and_opens_to_its_event() -> None:
    envelope = _created_envelope()
    received = Envelope.from_bytes(envelope.to_bytes())
    assert received == envelope
    assert received.correlation_id == envelope.id  # a journey's first event starts it
    assert open_envelope(received).model_dump() == open_envelope(envelope).model_dump()


def test_consumers_ignore_fields_added_by_a_newer_producer() -> None:
    envelope = _created_envelope()
    raw = json.loads(envelope.to_bytes())
    raw["data"]["added_later"] = True
    raw["added_to_envelope"] = 1
    event = open_envelope(Envelope.from_bytes(json.dumps(raw).encode()))
    assert not hasattr(event, "added_later")


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{}", b'{"id": "x"}'],
    ids=["not json", "empty object", "bad id"],
)
def test_a_message_that_is_not_an_envelope_is_invalid(body: bytes) -> None:
    with pytest.raises(InvalidEnvelope):
        Envelope.from_bytes(body)


def test_an_unknown_event_type_or_bad_payload_is_invalid() -> None:
    envelope = _created_envelope()
    with pytest.raises(InvalidEnvelope, match="unknown event"):
        open_envelope(envelope.model_copy(update={"type": "ticket.teleported"}))
    with pytest.raises(InvalidEnvelope, match="unknown event"):
        open_envelope(envelope.model_copy(update={"version": 9}))
    with pytest.raises(InvalidEnvelope, match="payload is invalid"):
        open_envelope(envelope.model_copy(update={"data": {"number": 5}}))
