"""The event catalogue: checked in, current, and every released event version only growing."""

from __future__ import annotations

import copy
import json
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import spoc_contracts.catalogue as catalogue_module
from spoc_contracts import REGISTRY, Envelope, Event, InvalidEnvelope, open_envelope
from spoc_contracts.catalogue import breaking_changes, build_catalogue, render_catalogue
from spoc_contracts.registry import EVENT_CLASSES

pytestmark = pytest.mark.contract
CATALOGUE = Path(__file__).parents[2] / "docs" / "events" / "catalogue.json"
RELEASED = CATALOGUE.parent / "released"


def checked_in() -> dict[str, Any]:
    return dict(json.loads(CATALOGUE.read_text(encoding="utf-8")))


def test_the_checked_in_catalogue_is_what_the_code_generates() -> None:
    assert CATALOGUE.read_text(encoding="utf-8") == render_catalogue(), (
        "docs/events/catalogue.json is stale: run `spoc contracts write`"
    )


def test_every_released_event_version_is_still_in_the_code_and_only_grew() -> None:
    result = spoc_contracts("check", CATALOGUE, RELEASED)
    assert result.exit_code == 0, result.output


# The released history: one frozen JSON Schema per event version, never rewritten by a break.


def spoc_contracts(command: str, catalogue: Path, released: Path, *flags: str) -> Result:
    from spoc.cli import app

    args = ["contracts", command, "--path", str(catalogue), "--released", str(released), *flags]
    return CliRunner().invoke(app, args)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the checked-in catalogue and released snapshots for the command to work on."""
    catalogue, released = tmp_path / "catalogue.json", tmp_path / "released"
    shutil.copy(CATALOGUE, catalogue)
    shutil.copytree(RELEASED, released)
    return catalogue, released


def code_with(monkeypatch: pytest.MonkeyPatch, *changed: type[Event], without: str = "") -> None:
    """The code's events as a change would leave them: `changed` classes replace those of the
    same type and version (or join them), and the `without` one ("type/vN") is gone."""
    kept = tuple(
        cls
        for cls in EVENT_CLASSES
        if f"{cls.TYPE}/v{cls.VERSION}" != without
        and all((cls.TYPE, cls.VERSION) != (new.TYPE, new.VERSION) for new in changed)
    )
    monkeypatch.setattr(catalogue_module, "EVENT_CLASSES", kept + changed)


def sla_met_without_met_at() -> type[Event]:
    class SlaMet(Event):
        TYPE = "sla.met"
        VERSION = 1

        number: str
        metric: str
        due_at: datetime

    return SlaMet


def sla_met_with_a_note() -> type[Event]:
    class SlaMet(Event):
        TYPE = "sla.met"
        VERSION = 1

        number: str
        metric: str
        due_at: datetime
        met_at: datetime
        note: str | None = None

    return SlaMet


def sla_met_v2() -> type[Event]:
    class SlaMetV2(Event):
        TYPE = "sla.met"
        VERSION = 2

        number: str
        metric: str
        met_at: datetime
        margin_seconds: int

    return SlaMetV2


def test_a_breaking_change_written_with_allow_breaking_still_fails_the_check(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    catalogue, released = files
    snapshot = (released / "sla.met" / "v1.json").read_bytes()
    code_with(monkeypatch, sla_met_without_met_at())

    refused = spoc_contracts("write", catalogue, released)
    assert refused.exit_code == 1 and "sla.met/v1.met_at: field removed" in refused.output
    assert catalogue.read_bytes() == CATALOGUE.read_bytes()

    forced = spoc_contracts("write", catalogue, released, "--allow-breaking")
    assert forced.exit_code == 0, forced.output
    assert catalogue.read_text(encoding="utf-8") == render_catalogue()  # the catalogue follows
    assert (released / "sla.met" / "v1.json").read_bytes() == snapshot  # the release does not

    check = spoc_contracts("check", catalogue, released)
    assert check.exit_code == 1
    assert "sla.met/v1.met_at: field removed" in check.output


def test_removing_a_released_event_version_fails_the_check(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    catalogue, released = files
    code_with(monkeypatch, without="sla.met/v1")

    assert spoc_contracts("write", catalogue, released).exit_code == 1
    assert spoc_contracts("write", catalogue, released, "--allow-breaking").exit_code == 0
    assert (released / "sla.met" / "v1.json").exists()

    check = spoc_contracts("check", catalogue, released)
    assert check.exit_code == 1
    assert "sla.met/v1: released, but gone from the code" in check.output


def test_an_additive_change_passes_and_grows_its_released_snapshot(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    catalogue, released = files
    code_with(monkeypatch, sla_met_with_a_note())
    unwritten = spoc_contracts("check", catalogue, released)
    assert (
        unwritten.exit_code == 1 and "sla.met/v1: the released snapshot lacks" in unwritten.output
    )

    written = spoc_contracts("write", catalogue, released)
    assert written.exit_code == 0, written.output
    assert "note" in json.loads((released / "sla.met" / "v1.json").read_text())["properties"]
    check = spoc_contracts("check", catalogue, released)
    assert check.exit_code == 0, check.output

    # Released with the note, the note is part of the contract now.
    monkeypatch.undo()
    dropped = spoc_contracts("check", catalogue, released)
    assert dropped.exit_code == 1 and "sla.met/v1.note: field removed" in dropped.output


def test_a_new_event_version_gets_its_own_snapshot_beside_the_old_one(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    catalogue, released = files
    v1 = (released / "sla.met" / "v1.json").read_bytes()
    code_with(monkeypatch, sla_met_v2())
    unwritten = spoc_contracts("check", catalogue, released)
    assert unwritten.exit_code == 1
    assert "sla.met/v2: not released yet: run `spoc contracts write`" in unwritten.output

    written = spoc_contracts("write", catalogue, released)
    assert written.exit_code == 0, written.output
    v2 = json.loads((released / "sla.met" / "v2.json").read_text())
    assert v2["required"] == ["number", "metric", "met_at", "margin_seconds"]
    assert (released / "sla.met" / "v1.json").read_bytes() == v1
    check = spoc_contracts("check", catalogue, released)
    assert check.exit_code == 0, check.output


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
