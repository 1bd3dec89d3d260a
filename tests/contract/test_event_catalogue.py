"""The event catalogue: checked in, current, and every released event version only growing."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import spoc_contracts.catalogue as catalogue_module
from spoc_contracts import REGISTRY, Envelope, Event, InvalidEnvelope, open_envelope
from spoc_contracts.catalogue import (
    breaking_changes,
    build_catalogue,
    render_catalogue,
    schema_breaking_changes,
)
from spoc_contracts.registry import EVENT_CLASSES

pytestmark = pytest.mark.contract
CATALOGUE = Path(__file__).parents[2] / "docs" / "events" / "catalogue.json"
RELEASED = CATALOGUE.parent / "released"
ASYNCAPI = CATALOGUE.parent / "asyncapi.json"


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
    shutil.copy(ASYNCAPI, tmp_path / "asyncapi.json")
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
            # Added beside the architecture's catalogue: staff changes reach routing, and a
            # requester's sign-in link reaches notify, as events.
            "staff.updated",
            "credential.token_issued",
            "credential.token_revoked",
            "credential.heartbeat",
            "requester.sign_in_requested",
            # Take or hand over a ticket: intake asks, routing answers.
            "ticket.assignment_requested",
            "ticket.assignment_refused",
            "ticket.escalation_refused",
            # An escalated ticket's helper, and the work handed back to the owner's side (D3).
            "ticket.assist_assigned",
            "ticket.hand_back_requested",
            "ticket.handed_back",
            "ticket.hand_back_refused",
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


# A tightened constraint breaks released producers; a loosened one, released consumers.


def released(name: str) -> dict[str, Any]:
    return dict(json.loads((RELEASED / f"{name}.json").read_text(encoding="utf-8")))


def _set(path: str, **constraints: Any) -> Any:
    """A change that adds `constraints` to the property at `path` (`a.b` through $defs)."""

    def change(schema: dict[str, Any]) -> None:
        target = schema
        for part in path.split("."):
            target = target["properties"][part]
            if "$ref" in target:
                target = schema["$defs"][target["$ref"].rsplit("/", 1)[-1]]
        target.update(constraints)

    return change


def _narrow_enum(path: str, value: str) -> Any:
    def change(schema: dict[str, Any]) -> None:
        prop = schema["properties"][path]
        for alternative in prop.get("anyOf", [prop]):
            if value in alternative.get("enum", []):
                alternative["enum"].remove(value)

    return change


def _require(name: str, new_property: dict[str, Any] | None = None) -> Any:
    def change(schema: dict[str, Any]) -> None:
        if new_property is not None:
            schema["properties"][name] = new_property
        schema["required"].append(name)

    return change


CREATED = "ticket.created/v2"
WARNING = "sla.warning/v1"


@pytest.mark.parametrize(
    ("name", "before", "after", "expected"),
    [
        (CREATED, None, _set("subject", maxLength=200), "subject: maxLength 200 added (tight"),
        (
            CREATED,
            _set("subject", maxLength=500),
            _set("subject", maxLength=200),
            "subject: maxLength changed from 500 to 200 (tightened)",
        ),
        (
            CREATED,
            _set("subject", minLength=1),
            _set("subject", minLength=3),
            "subject: minLength changed from 1 to 3 (tightened)",
        ),
        (CREATED, None, _set("subject", minLength=1), "subject: minLength 1 added (tightened)"),
        (
            CREATED,
            None,
            _set("number", pattern=r"^SD-\d{6}$"),
            r"number: pattern '^SD-\\d{6}$' added (tightened)",
        ),
        (
            CREATED,
            None,
            _set("requester.email", maxLength=254),
            "requester.email: maxLength 254 added (tightened)",
        ),
        (
            CREATED,
            None,
            _narrow_enum("type", "complaint"),
            "type: enum narrowed: no longer admits ['complaint'] (tightened)",
        ),
        (
            CREATED,
            None,
            _narrow_enum("impact", "low"),  # an optional enum: anyOf [enum, null]
            "impact: enum narrowed: no longer admits ['low'] (tightened)",
        ),
        (
            CREATED,
            None,
            _require("mood", {"type": "string"}),
            "mood: newly required",
        ),
        (CREATED, None, _require("category"), "category: newly required"),
        (
            WARNING,
            None,
            _set("percent_elapsed", minimum=10),
            "percent_elapsed: minimum changed from 0 to 10 (tightened)",
        ),
        (
            WARNING,
            None,
            _set("percent_elapsed", maximum=100),
            "percent_elapsed: maximum 100 added (tightened)",
        ),
        (
            WARNING,
            _set("percent_elapsed", exclusiveMaximum=1000),
            _set("percent_elapsed", exclusiveMaximum=100),
            "percent_elapsed: exclusiveMaximum changed from 1000 to 100 (tightened)",
        ),
    ],
    ids=[
        "new maxLength",
        "lowered maxLength",
        "raised minLength",
        "new minLength",
        "new pattern",
        "new maxLength in a nested model",
        "narrower enum",
        "narrower optional enum",
        "new required field",
        "optional field made required",
        "raised minimum",
        "new maximum",
        "lowered exclusive maximum",
    ],
)
def test_a_tightened_constraint_is_breaking(
    name: str, before: Any, after: Any, expected: str
) -> None:
    old = released(name)
    if before is not None:
        before(old)
    new = copy.deepcopy(old)
    after(new)
    problems = schema_breaking_changes(name, old, new)
    assert any(p.startswith(f"{name}.") and expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (_set("subject", maxLength=200), None, "subject: maxLength 200 dropped (loosened)"),
        (None, lambda s: s["properties"]["type"]["enum"].append("praise"), "enum widened"),
    ],
    ids=["dropped maxLength", "wider enum"],
)
def test_a_loosened_constraint_is_breaking_too(before: Any, after: Any, expected: str) -> None:
    """Released consumers validate what they read: a value they refuse dead-letters."""
    old = released(CREATED)
    if before is not None:
        before(old)
    new = copy.deepcopy(released(CREATED))
    if after is not None:
        after(new)
    problems = schema_breaking_changes(CREATED, old, new)
    assert any(expected in p for p in problems), problems


def test_an_unchanged_snapshot_and_a_new_optional_field_are_not_breaking() -> None:
    for name in (CREATED, WARNING, "envelope"):
        grown = released(name)
        grown["properties"]["added_later"] = {"anyOf": [{"type": "string"}, {"type": "null"}]}
        assert schema_breaking_changes(name, released(name), released(name)) == []
        assert schema_breaking_changes(name, released(name), grown) == []


def sla_met_with_a_bounded_metric() -> type[Event]:
    from pydantic import Field

    class SlaMet(Event):
        TYPE = "sla.met"
        VERSION = 1

        number: str
        metric: str = Field(max_length=40)
        due_at: datetime
        met_at: datetime

    return SlaMet


def test_spoc_contracts_check_refuses_a_tightened_released_event(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    catalogue, released_dir = files
    code_with(monkeypatch, sla_met_with_a_bounded_metric())

    check = spoc_contracts("check", catalogue, released_dir)
    assert check.exit_code == 1
    assert "sla.met/v1.metric: maxLength 40 added (tightened)" in check.output
    refused = spoc_contracts("write", catalogue, released_dir)
    assert refused.exit_code == 1 and "maxLength 40 added" in refused.output


# `spoc contracts check` from wherever it is run.

SPOC = Path(sys.executable).parent / "spoc"


def test_spoc_contracts_check_works_from_any_directory(tmp_path: Path) -> None:
    run = subprocess.run(
        [str(SPOC), "contracts", "check"], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert "catalogue up to date" in run.stderr


def test_missing_released_snapshots_are_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    run = subprocess.run(
        [str(SPOC), "contracts", "check", "--released", str(tmp_path / "nowhere")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert f"no released event snapshots at {tmp_path / 'nowhere'}" in run.stderr
    assert "Traceback" not in run.stderr


def test_outside_a_source_tree_the_command_asks_for_the_snapshots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spoc.contracts_cli

    monkeypatch.setattr(spoc.contracts_cli, "SOURCE_ROOT", tmp_path)  # as from a wheel
    from spoc.cli import app

    result = CliRunner().invoke(app, ["contracts", "check"])
    assert result.exit_code == 2
    assert "Spoc is not run from its source tree. Give --released DIR" in result.output


# The same catalogue as an AsyncAPI 3 document (docs/events/asyncapi.json).


def test_the_checked_in_asyncapi_document_is_what_the_code_generates() -> None:
    from spoc_contracts.asyncapi import render_asyncapi

    assert ASYNCAPI.read_text(encoding="utf-8") == render_asyncapi(), (
        "docs/events/asyncapi.json is stale: run `spoc contracts write`"
    )


def test_a_stale_asyncapi_document_fails_the_check_until_written(
    files: tuple[Path, Path],
) -> None:
    catalogue, released_dir = files
    (catalogue.parent / "asyncapi.json").write_text("{}", encoding="utf-8")
    stale = spoc_contracts("check", catalogue, released_dir)
    assert stale.exit_code == 1
    assert f"{catalogue.parent / 'asyncapi.json'} is out of date" in stale.output
    assert spoc_contracts("write", catalogue, released_dir).exit_code == 0
    assert spoc_contracts("check", catalogue, released_dir).exit_code == 0


def _pointer(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_the_asyncapi_document_names_every_event_version_channel_and_subscriber() -> None:
    from spoc_contracts.topology import SUBSCRIPTIONS

    document = json.loads(ASYNCAPI.read_text(encoding="utf-8"))
    assert document["asyncapi"] == "3.0.0"
    for ref in _refs(document):  # every reference resolves inside the document
        _pointer(document, ref)

    messages = document["components"]["messages"]
    assert set(messages) == {f"{c.TYPE}.v{c.VERSION}" for c in EVENT_CLASSES}
    for name, message in messages.items():
        data = message["payload"]["allOf"][1]["properties"]["data"]
        assert _pointer(document, data["$ref"])["type"] == "object", name
    for event_type, channel in document["channels"].items():
        assert channel["address"] == event_type
        assert channel["bindings"]["amqp"]["exchange"]["name"] == "spoc.events"
        for ref in channel["messages"].values():
            assert _pointer(document, ref["$ref"])["name"].startswith(event_type + ".v")

    receives = {
        (op["title"].split()[0], _pointer(document, op["channel"]["$ref"])["address"])
        for op in document["operations"].values()
        if op["action"] == "receive"
    }
    assert receives == {(s, t) for s, types in SUBSCRIPTIONS.items() for t in types}
    sends = [op for op in document["operations"].values() if op["action"] == "send"]
    assert {_pointer(document, op["channel"]["$ref"])["address"] for op in sends} == set(
        document["channels"]
    )
    for op in document["operations"].values():  # an operation's messages are its channel's
        channel = _pointer(document, op["channel"]["$ref"])
        for ref in op["messages"]:
            assert ref["$ref"].startswith(op["channel"]["$ref"] + "/messages/")
            assert ref["$ref"].rsplit("/", 1)[-1] in channel["messages"]


def test_a_real_envelope_matches_its_asyncapi_message_and_a_broken_one_does_not() -> None:
    from jsonschema import Draft202012Validator

    document = json.loads(ASYNCAPI.read_text(encoding="utf-8"))
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    payload = {**document, "$ref": "#/components/messages/ticket.created.v2/payload"}
    validator = Draft202012Validator(payload)

    wire = json.loads(_created_envelope().to_bytes())
    assert list(validator.iter_errors(wire)) == []
    del wire["data"]["subject"]
    assert [error.message for error in validator.iter_errors(wire)] == [
        "'subject' is a required property"
    ]
