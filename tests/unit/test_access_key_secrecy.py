"""The requester's access key: sealed for notify from the moment intake makes it, plaintext only
in intake's answer and in the mail notify sends, nowhere at rest or on the bus."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Table, select

from spoc_contracts import TicketCreated, open_envelope
from spoc_intake.models import IdempotencyAnswer
from spoc_intake.schemas import TicketCreate
from spoc_intake.settings import IntakeSettings
from spoc_notify.models import Delivery, TicketContact
from spoc_notify.settings import NotifySettings
from spoc_platform.bus import PoisonMessage
from spoc_platform.sealing import DEVELOPMENT_SECRET, generate_key_pair, open_sealed, seal_for
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, envelope, service, ticket_created, ticket_created_v1
from tests.unit.test_notify_acknowledgement import RecordingTransport, clocks_started

pytestmark = pytest.mark.unit
KEY = "secret-key-123"


async def table_text(running: ServiceUnderTest, table: Any) -> str:
    """Every row of a table as one string: what someone with a copy of the database reads."""
    table = table if isinstance(table, Table) else table.__table__
    async with running.runtime.engine.connect() as conn:
        rows = (await conn.execute(select(table))).all()
    return "\n".join(repr(tuple(row)) for row in rows)


async def create(intake: ServiceUnderTest, idempotency_key: str | None = None) -> dict[str, Any]:
    outcome = await intake.container.tickets.create(
        TicketCreate.model_validate(NEW_TICKET), idempotency_key=idempotency_key
    )
    return outcome.body


async def test_intake_publishes_the_access_key_sealed_for_notify_and_keeps_no_plaintext(
    sqlite_url: str,
) -> None:
    async with service("intake", sqlite_url) as intake:
        body = await create(intake, idempotency_key="form-1f6a0c2e")
        key = body["access_key"]

        outbox = await table_text(intake, intake.runtime.tables.outbox)
        assert "ticket.created" in outbox and key not in outbox
        [created] = await intake.published("ticket.created")
        event = open_envelope(created)
        assert isinstance(event, TicketCreated) and created.version == 2
        assert open_sealed(DEVELOPMENT_SECRET, event.access_key_sealed) == key
        stored = await table_text(intake, IdempotencyAnswer)
        assert stored and key not in stored and "form-1f6a0c2e" not in stored


async def test_an_idempotent_replay_returns_the_same_access_key_from_a_sealed_answer(
    sqlite_url: str,
) -> None:
    async with service("intake", sqlite_url) as intake:
        first = await create(intake, idempotency_key="form-1f6a0c2e")
        assert first["access_key"] not in await table_text(intake, IdempotencyAnswer)
        again = await intake.container.tickets.create(
            TicketCreate.model_validate(NEW_TICKET), idempotency_key="form-1f6a0c2e"
        )
        assert again.replayed and again.body == first
        assert len(await intake.published("ticket.created")) == 1


async def test_notify_keeps_the_key_sealed_at_rest_and_only_the_sent_mail_holds_the_link(
    sqlite_url: str,
) -> None:
    transport = RecordingTransport()
    async with service("notify", sqlite_url, transport=transport) as notify:
        ticket_id = uuid.uuid4()
        await notify.deliver(envelope(ticket_created(KEY), ticket_id=ticket_id, source="intake"))
        assert KEY not in await table_text(notify, TicketContact)

        await notify.deliver(envelope(clocks_started(), ticket_id=ticket_id, source="sla"))
        for table in (TicketContact, Delivery):
            assert KEY not in await table_text(notify, table)
        assert await notify.container.dispatcher.dispatch_once() == 1

        [mail] = transport.sent
        assert f"/t/SD-000042?key={KEY}" in mail.get_body(("plain",)).get_content()
        for table in (TicketContact, Delivery):
            assert KEY not in await table_text(notify, table)


async def test_a_creation_published_before_sealing_is_acknowledged_and_its_key_kept_sealed(
    sqlite_url: str,
) -> None:
    transport = RecordingTransport()
    async with service("notify", sqlite_url, transport=transport) as notify:
        ticket_id = uuid.uuid4()
        await notify.deliver(envelope(ticket_created_v1(KEY), ticket_id=ticket_id, source="intake"))
        assert KEY not in await table_text(notify, TicketContact)
        await notify.deliver(envelope(clocks_started(), ticket_id=ticket_id, source="sla"))
        assert await notify.container.dispatcher.dispatch_once() == 1

        [mail] = transport.sent
        assert f"/t/SD-000042?key={KEY}" in mail.get_body(("plain",)).get_content()


async def test_routing_triages_creations_of_both_versions(sqlite_url: str) -> None:
    async with service("routing", sqlite_url) as routing:
        for event in (ticket_created(number="SD-000001"), ticket_created_v1(number="SD-000002")):
            await routing.deliver(envelope(event, source="intake"))
        routed = await routing.published("ticket.routed")
        assert sorted(e.data["number"] for e in routed) == ["SD-000001", "SD-000002"]


async def test_a_key_sealed_for_another_notify_is_refused_not_mailed(sqlite_url: str) -> None:
    transport = RecordingTransport()
    other = generate_key_pair()
    async with service(
        "notify", sqlite_url, transport=transport, access_key_secret=other.secret
    ) as notify:
        ticket_id = uuid.uuid4()
        await notify.deliver(envelope(ticket_created(KEY), ticket_id=ticket_id, source="intake"))
        # Dead-lettered, not failed for good: once the keys are set right, a replay sends it.
        with pytest.raises(PoisonMessage, match="not sealed for this notify's key"):
            await notify.deliver(envelope(clocks_started(), ticket_id=ticket_id, source="sla"))
        assert await notify.container.dispatcher.dispatch_once() == 0
        assert transport.sent == [] and await notify.published() == []


async def test_a_delivery_that_fails_for_good_keeps_no_message(sqlite_url: str) -> None:
    transport = RecordingTransport(failures=100)
    async with service("notify", sqlite_url, transport=transport, max_attempts=1) as notify:
        ticket_id = uuid.uuid4()
        await notify.deliver(envelope(ticket_created(KEY), ticket_id=ticket_id, source="intake"))
        await notify.deliver(envelope(clocks_started(), ticket_id=ticket_id, source="sla"))
        await notify.container.dispatcher.dispatch_once()

        async with notify.runtime.engine.connect() as conn:
            [(status, message)] = (
                await conn.execute(
                    select(Delivery.__table__.c.status, Delivery.__table__.c.message)
                )
            ).all()
        assert (status, message) == ("failed", "")


PRODUCTION = {
    "environment": "production",
    "database_url": "postgresql+asyncpg://spoc@db/spoc",
    "amqp_url": "amqp://spoc:a-long-broker-secret@rabbitmq:5672/spoc",
}


def test_production_refuses_the_development_key_pair() -> None:
    with pytest.raises(ValidationError, match="development access-key pair"):
        IntakeSettings(**PRODUCTION)
    with pytest.raises(ValidationError, match="development access-key pair"):
        NotifySettings(**PRODUCTION)


def test_production_starts_with_a_generated_key_pair_and_refuses_a_malformed_one() -> None:
    pair = generate_key_pair()
    assert IntakeSettings(**PRODUCTION, access_key_recipient=pair.recipient)
    assert NotifySettings(**PRODUCTION, access_key_secret=pair.secret)
    with pytest.raises(ValidationError, match="32 bytes"):
        NotifySettings(**PRODUCTION, access_key_secret="c2hvcnQ=")


def test_spoc_keys_generate_prints_a_pair_that_seals_and_opens() -> None:
    from typer.testing import CliRunner

    from spoc.cli import app

    result = CliRunner().invoke(app, ["keys", "generate"])
    assert result.exit_code == 0, result.output
    values = dict(line.split("=", 1) for line in result.output.splitlines())
    recipient = values["SPOC_INTAKE_ACCESS_KEY_RECIPIENT"]
    secret = values["SPOC_NOTIFY_ACCESS_KEY_SECRET"]
    assert open_sealed(secret, seal_for(recipient, KEY)) == KEY
    assert NotifySettings(**PRODUCTION, access_key_secret=secret)


def test_the_embedded_default_makes_its_own_pair_once_readable_by_its_owner_only(
    tmp_path: Path,
) -> None:
    from spoc.embedded import embedded_settings

    first = embedded_settings(tmp_path / "data", "http://127.0.0.1:8000")
    again = embedded_settings(tmp_path / "data", "http://127.0.0.1:8000")

    assert first.notify.access_key_secret != DEVELOPMENT_SECRET
    assert again.notify.access_key_secret == first.notify.access_key_secret
    sealed = seal_for(first.intake.access_key_recipient, KEY)
    assert open_sealed(first.notify.access_key_secret, sealed) == KEY
    [key_file] = (tmp_path / "data").glob("access-key*")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


async def test_after_a_key_rotation_notify_still_opens_what_the_old_key_sealed(
    sqlite_url: str,
) -> None:
    transport = RecordingTransport()
    new = generate_key_pair()
    async with service(
        "notify",
        sqlite_url,
        transport=transport,
        access_key_secret=new.secret,
        access_key_previous_secrets=[DEVELOPMENT_SECRET],
    ) as notify:
        ticket_id = uuid.uuid4()
        # Sealed by intake before it was given the new public key.
        await notify.deliver(envelope(ticket_created(KEY), ticket_id=ticket_id, source="intake"))
        await notify.deliver(envelope(clocks_started(), ticket_id=ticket_id, source="sla"))
        assert await notify.container.dispatcher.dispatch_once() == 1
        [mail] = transport.sent
        assert f"/t/SD-000042?key={KEY}" in mail.get_body(("plain",)).get_content()
