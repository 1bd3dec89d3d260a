"""Intake's use cases: each state change and its events commit in one transaction."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from spoc_contracts import Requester, TicketCreated
from spoc_intake import metrics, repository, work
from spoc_intake.answers import INTERNAL_SCOPE, answer_digest, open_answer, seal_answer
from spoc_intake.callers import Caller
from spoc_intake.categories import Category, check_new_ticket
from spoc_intake.schemas import FollowUpCreatedRead, TicketCreate, TicketCreatedRead, email_key
from spoc_intake.settings import IntakeSettings
from spoc_intake.tracking import format_number, hash_access_key, new_access_key
from spoc_platform.db import utc_now
from spoc_platform.sealing import seal_for
from spoc_platform.unit_of_work import UnitOfWork, UnitOfWorkFactory
from spoc_platform.web import ApiError


@dataclass(frozen=True)
class CreateOutcome:
    body: dict[str, Any]
    replayed: bool


def idempotency_scope(caller: Caller | None, data: TicketCreate) -> str:
    """Whose Idempotency-Keys a key is among: the credential's (a token's, a session's), or an
    anonymous caller's for one requester address (anyone may call anonymously, but only the
    requester reads that address's mail, where the access key goes). Without a caller (work
    inside the desk), the key alone."""
    if caller is None:
        return INTERNAL_SCOPE
    if caller.is_anonymous:
        return f"anonymous:{email_key(str(data.requester.email))}"
    return f"credential:{caller.credential_id or f'{caller.role}:{caller.subject_id}'}"


def known_by_credential(caller: Caller | None, data: TicketCreate, trusted_network: bool) -> bool:
    """Whether the ticket's opener is vouched for without looking at earlier tickets: staff or
    an integration (named by a credential), the address's own requester signed in by a mailed
    link, or a client on a trusted network. Work inside the desk (no caller) is not: it may
    relay what a stranger wrote, so the earlier tickets decide."""
    if trusted_network:
        return True
    if caller is None or caller.is_anonymous:
        return False
    if caller.role == "requester":
        return email_key(caller.email or "") == email_key(str(data.requester.email))
    return True


def _request_hash(data: TicketCreate) -> str:
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class TicketService:
    def __init__(
        self,
        unit_of_work: UnitOfWorkFactory,
        settings: IntakeSettings,
        categories: tuple[Category, ...] = (),
        *,
        category_required: bool = False,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._settings = settings
        # The desk file's categories (D17); none: category and fields stay free.
        self.categories = categories
        # The desk file's `category_required`: with categories, every new ticket names one.
        self._category_required = category_required

    async def create(
        self,
        data: TicketCreate,
        *,
        idempotency_key: str | None,
        caller: Caller | None = None,
        trusted_network: bool = False,
    ) -> CreateOutcome:
        """Opens a ticket, or replays the answer an earlier request with the same
        Idempotency-Key (in the caller's scope, see `idempotency_scope`) and body got. An
        anonymous caller's answer is kept without the access key: the requester has it by mail,
        and whoever else knows the key, the address and the body gets the number only.
        `trusted_network`: the client is on a network the desk trusts (the front door's).

        A phone call staff log (`channel: phone`) records who took it; one solved during the
        call opens resolved, in the same transaction (see `_solve_during_call`)."""
        if data.resolved_during_call is not None and (caller is None or not caller.is_staff):
            # The route holds everyone else to the public model; this is for other callers.
            raise work.forbidden("only staff log a phone call solved during the call")
        # Every missing or wrong field in one 422, before anything is looked up; what is kept
        # (and compared on a replay) is the fields as stored.
        fields = check_new_ticket(
            self.categories,
            data.category,
            data.subcategory,
            data.fields,
            category_required=self._category_required,
        )
        data = data.model_copy(update={"fields": fields})
        staff = caller is not None and caller.is_staff
        return await self._open(
            data,
            idempotency_key,
            scope=idempotency_scope(caller, data),
            keeps_access_key=caller is None or not caller.is_anonymous,
            vouched=known_by_credential(caller, data, trusted_network),
            took_call=caller if staff and data.channel == "phone" else None,
            follows=None,
        )

    async def follow_up(
        self,
        wanted: work.FollowUpWanted,
        *,
        idempotency_key: str | None,
        before_create: Callable[[], Awaitable[object]] | None = None,
    ) -> CreateOutcome:
        """Opens the ticket a requester's late reply asks for (see TicketWork.comment), linked
        to the one replied to. Its Idempotency-Keys are among that ticket's: only its requester
        (by key or session) gets here, so a replay shows the new key again. `before_create`
        (the front door's budget) is called only when a ticket is to be created, not on a
        replay."""
        return await self._open(
            wanted.ticket,
            idempotency_key,
            scope=f"follow-up:{wanted.follows.id}",
            keeps_access_key=True,
            # Not by itself: whoever opened the ticket replied to holds its key. The address's
            # vouched contact, if any (a sign-in by link, staff's tickets), still makes it known.
            vouched=False,
            took_call=None,
            follows=wanted.follows,
            before_create=before_create,
        )

    async def _open(
        self,
        data: TicketCreate,
        idempotency_key: str | None,
        *,
        scope: str,
        keeps_access_key: bool,
        vouched: bool,
        took_call: Caller | None,
        follows: work.FollowedTicket | None,
        before_create: Callable[[], Awaitable[object]] | None = None,
    ) -> CreateOutcome:
        request_hash = _request_hash(data)
        if idempotency_key is not None:
            earlier = await self._earlier_answer(idempotency_key, scope, request_hash)
            if earlier is not None:
                return earlier
        if before_create is not None:
            await before_create()
        try:
            return await self._create(
                data,
                idempotency_key,
                scope,
                request_hash,
                keeps_access_key,
                vouched,
                took_call,
                follows,
            )
        except IntegrityError:
            # Two requests with one key raced; the other committed first. Answer as it did.
            if idempotency_key is None:
                raise
            earlier = await self._earlier_answer(idempotency_key, scope, request_hash)
            if earlier is None:
                raise
            return earlier

    async def _earlier_answer(
        self, key: str, scope: str, request_hash: str
    ) -> CreateOutcome | None:
        digest = answer_digest(key, scope)
        async with self._unit_of_work.engine.begin() as conn:
            row = await repository.find_idempotency(conn, digest)
            if row is None:
                return None
            expiry = row.created_at + timedelta(hours=self._settings.idempotency_hours)
            if expiry < utc_now():
                await repository.forget_idempotency(conn, digest)
                return None
        if row.request_hash != request_hash:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was already used with a different request body",
                [
                    {
                        "field": "header.Idempotency-Key",
                        "message": "reused with another body",
                        "type": "idempotency_key_reused",
                    }
                ],
            )
        body = open_answer(key, row.answer, scope)
        if body is None:
            # Only a digest collision could get here (2^-256): never hand over another's answer.
            raise RuntimeError("a stored idempotent answer does not open with its own key")
        metrics.idempotent_replays.inc()
        return CreateOutcome(body=body, replayed=True)

    async def _create(
        self,
        data: TicketCreate,
        idempotency_key: str | None,
        scope: str,
        request_hash: str,
        keeps_access_key: bool,
        vouched: bool,
        took_call: Caller | None,
        follows: work.FollowedTicket | None,
    ) -> CreateOutcome:
        ticket_id = uuid.uuid4()
        solved = data.resolved_during_call is not None and took_call is not None
        access_key = new_access_key()
        now = utc_now()
        requester = data.requester
        async with self._unit_of_work() as uow:
            # Only for callers nobody vouches for: one indexed EXISTS, and none on the others'
            # path. Earlier tickets count only if vouched for: a stranger's first harmless
            # ticket must not make their next one known.
            requester_known = vouched or await repository.requester_vouched_for(
                uow.conn, str(requester.email)
            )
            sequence = await repository.insert_ticket(
                uow.conn,
                id=ticket_id,
                subject=data.subject,
                description=data.description,
                type=data.type,
                channel=data.channel,
                category=data.category,
                subcategory=data.subcategory,
                item=data.item,
                impact=data.impact,
                urgency=data.urgency,
                fields=data.fields,
                requester_name=requester.name,
                requester_email=str(requester.email),
                requester_phone=requester.phone,
                requester_locale=requester.locale,
                preferred_channel=requester.preferred_channel,
                access_key_hash=hash_access_key(access_key),
                requester_vouched=vouched,
                status="new",
                routing_sequence=0,
                sla_sequence=0,
                created_at=now,
                updated_at=now,
                taken_by=took_call.subject_id if took_call else None,
                first_contact_resolution=solved,
                follows_up=follows.sequence if follows else None,
            )
            number = format_number(self._settings.number_prefix, sequence)
            received = f"received by {data.channel}"
            if took_call is not None:
                received += f", taken by {work.agent(took_call).name}"
            if follows is not None:
                received += f"; follows up {follows.number}"
            await repository.add_timeline(
                uow.conn,
                ticket_id=ticket_id,
                at=now,
                kind="created",
                summary=f"Registered as {number} ({received}).",
            )
            await uow.publish(
                TicketCreated(
                    number=number,
                    subject=data.subject,
                    description=data.description,
                    type=data.type,
                    channel=data.channel,
                    requester=Requester(
                        name=requester.name,
                        email=str(requester.email),
                        phone=requester.phone,
                        locale=requester.locale,
                        preferred_channel=requester.preferred_channel,
                    ),
                    category=data.category,
                    subcategory=data.subcategory,
                    item=data.item,
                    impact=data.impact,
                    urgency=data.urgency,
                    fields=data.fields,
                    created_at=now,
                    # Sealed to notify, the only service that needs it (for the link it sends):
                    # the outbox, the broker and every other consumer see only ciphertext.
                    access_key_sealed=seal_for(self._settings.access_key_recipient, access_key),
                    requester_known=requester_known,
                    taken_by=took_call.subject_id if took_call else None,
                    first_contact_resolution=solved,
                    follows_up=follows.number if follows else None,
                ),
                ticket_id=ticket_id,
            )
            if solved and took_call is not None and data.resolved_during_call is not None:
                await self._solve_during_call(
                    uow, sequence, work.agent(took_call), data.resolved_during_call.summary, now
                )
            if follows is not None:
                await repository.add_timeline(
                    uow.conn,
                    ticket_id=follows.id,
                    at=now,
                    kind="followed_up_by",
                    summary=f"Followed up by {number}: the requester wrote again after this "
                    f"ticket was {follows.why}.",
                )
            created = TicketCreatedRead(
                id=ticket_id,
                number=number,
                status="resolved" if solved else "new",
                access_key=access_key,
                created_at=now,
            )
            if follows is not None:
                created = FollowUpCreatedRead(**dict(created), follows_up=follows.number)
            body = created.model_dump(mode="json")
            if idempotency_key is not None:
                # Null on a replay: the key is not shown again (the requester has it by mail).
                kept = body if keeps_access_key else {**body, "access_key": None}
                await repository.save_idempotency(
                    uow.conn,
                    key_digest=answer_digest(idempotency_key, scope),
                    request_hash=request_hash,
                    ticket_id=ticket_id,
                    answer=seal_answer(idempotency_key, kept, scope),
                    created_at=now,
                )
        metrics.tickets_created.labels(data.channel, data.type).inc()
        return CreateOutcome(body=body, replayed=False)

    async def _solve_during_call(
        self, uow: UnitOfWork, sequence: int, agent: work.Actor, summary: str, now: datetime
    ) -> None:
        """First-contact resolution (D4): the answer given on the call is the first public
        reply, then the ticket moves `new` → `resolved`, by the same paths (and events) as
        a reply and a status change on any ticket."""
        row = await repository.ticket_for_change(uow.conn, sequence)
        assert row is not None, "the ticket was inserted in this transaction"
        prefix = self._settings.number_prefix
        await work.record_comment(
            uow, row, actor=agent, visibility="public", body=summary, now=now, prefix=prefix
        )
        await work.record_move(
            uow,
            row,
            "resolved",
            reason="resolved during the call",
            actor=agent,
            now=now,
            prefix=prefix,
        )
