"""Working a ticket: replies, status changes, feedback, each with its events in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.exc import IntegrityError

from spoc_contracts import (
    FeedbackSubmitted,
    TicketAssignmentRequested,
    TicketCommented,
    TicketEscalationRequested,
    TicketHandBackRequested,
    TicketStatusChanged,
    TicketUpdated,
)
from spoc_intake import repository, sla_state, workflow
from spoc_intake.callers import Caller
from spoc_intake.categories import Category, check_recategorisation, still_declared
from spoc_intake.schemas import (
    AssignmentCreate,
    AssignmentRequestedRead,
    AuthorRead,
    Channel,
    CommentRead,
    EscalationCreate,
    EscalationRequestedRead,
    FeedbackCreate,
    FeedbackRead,
    HandBackCreate,
    HandBackRequestedRead,
    RequesterCommentCreate,
    RequesterCreate,
    StaffCommentCreate,
    StatusChange,
    StatusChangedRead,
    TicketCreate,
    TicketUpdate,
    Visibility,
)
from spoc_intake.settings import IntakeSettings
from spoc_intake.tracking import format_number, parse_number
from spoc_intake.views import Audience, audience_of, not_found
from spoc_platform.db import utc_now
from spoc_platform.unit_of_work import UnitOfWork, UnitOfWorkFactory
from spoc_platform.web import ApiError


@dataclass(frozen=True)
class Actor:
    """Who acts on the ticket, as the timeline and the events name them."""

    kind: Literal["requester", "agent"]
    id: str | None
    name: str


def agent(caller: Caller) -> Actor:
    return Actor("agent", caller.subject_id, caller.name or caller.subject_id or "staff")


@dataclass(frozen=True)
class FollowedTicket:
    """The ticket a late reply follows up: its id and number (the sequence and as written)."""

    id: uuid.UUID
    sequence: int
    number: str
    # Why the reply could not join it: "closed", or "past its reopen window".
    why: str


@dataclass(frozen=True)
class FollowUpWanted:
    """A requester's reply that came too late for its ticket: it opens `ticket` instead, a new
    ticket linked to `follows` (TicketService.follow_up does, with the Idempotency-Key)."""

    ticket: TicketCreate
    follows: FollowedTicket


# A ticket's subject, at most (schemas.OneLine): a follow-up's "Re: …" is cut to fit.
MAX_SUBJECT = 200

# A resolution is rated once given (and still after the requester confirmed it).
RATEABLE = frozenset({"resolved", "closed"})
# Where help from another group still makes sense.
ACTIVE = frozenset({"new", "open", "in_progress", "pending"})


def forbidden(what: str) -> ApiError:
    return ApiError(403, "forbidden", what)


def closed(number: str) -> ApiError:
    return ApiError(
        409,
        "ticket_closed",
        f"{number} is closed and takes no more messages; please open a new request",
        [{"message": "the ticket is closed", "type": "ticket_closed"}],
    )


class TicketWork:
    def __init__(
        self,
        unit_of_work: UnitOfWorkFactory,
        settings: IntakeSettings,
        categories: Sequence[Category] = (),
    ) -> None:
        self._unit_of_work = unit_of_work
        self._settings = settings
        # The desk file's categories (D17): a re-classification and a follow-up keep to them.
        self._categories = tuple(categories)

    async def comment(
        self,
        number: str,
        data: StaffCommentCreate | RequesterCommentCreate,
        *,
        caller: Caller,
        access_key: str | None,
        admit_reply: Callable[[], Awaitable[object]] | None = None,
    ) -> CommentRead | FollowUpWanted:
        """Adds a reply. The route has already held a requester to their own model (no
        `visibility`); here a requester's reply is public whatever it is. A requester's reply
        to a closed ticket, or to a resolution older than the reopen window, joins nothing: it
        is answered with the follow-up ticket it should open (the route opens it).
        `admit_reply` (the front door's, for an anonymous caller) is called once the message
        is known to be a reply, before anything is written: a follow-up spends from the
        budget of a new ticket instead, not from both."""
        now = utc_now()
        async with self._unit_of_work() as uow:
            row, seen_as = await self._ticket(uow, number, caller, access_key)
            if seen_as == "integration":
                raise forbidden("an integration cannot take part in the conversation")
            if seen_as == "requester":
                too_late = self._too_late_for_reply(row, now)
                if too_late is not None:
                    prefix = self._settings.number_prefix
                    return _follow_up(
                        row, data.body, caller, prefix, why=too_late, categories=self._categories
                    )
            if row.status == "closed":
                raise closed(number)
            if admit_reply is not None:
                await admit_reply()
            actor = self._actor(seen_as, caller, row)
            # A requester's reply is public whatever model it came in.
            visibility: Visibility = "public"
            if isinstance(data, StaffCommentCreate) and actor.kind == "agent":
                visibility = data.visibility
            comment_id = await record_comment(
                uow,
                row,
                actor=actor,
                visibility=visibility,
                body=data.body,
                now=now,
                prefix=self._settings.number_prefix,
            )
            resumed = workflow.RESUMED_BY_REPLY.get(row.status)
            if actor.kind == "requester" and resumed is not None:
                # The requester answered what the desk waited for: the clock runs again (D29).
                await self._move(
                    uow, row, resumed, reason="the requester replied", actor=actor, now=now
                )
        return CommentRead(
            id=comment_id,
            at=now,
            author=AuthorRead(name=actor.name, kind=actor.kind),
            visibility=visibility,
            body=data.body,
        )

    def _too_late_for_reply(self, row: Any, now: datetime) -> str | None:
        """Why a requester's reply cannot join the ticket any more, or None if it can."""
        if row.status == "closed":
            return "closed"
        if row.status == "resolved" and not workflow.within_reopen_window(
            row.resolved_at, now, self._settings.reopen_days
        ):
            return "past its reopen window"
        return None

    async def change_status(
        self, number: str, data: StatusChange, *, caller: Caller, access_key: str | None
    ) -> StatusChangedRead:
        now = utc_now()
        async with self._unit_of_work() as uow:
            row, seen_as = await self._ticket(uow, number, caller, access_key)
            if seen_as == "integration":
                raise forbidden("an integration cannot change a ticket's status")
            by_requester = seen_as == "requester"
            allowed = workflow.allowed_targets(row.status, by_requester=by_requester)
            if data.to not in allowed:
                raise _not_allowed(row.status, data.to, allowed, by_requester=by_requester)
            if by_requester and not workflow.within_reopen_window(
                row.resolved_at, now, self._settings.reopen_days
            ):
                raise ApiError(
                    409,
                    "reopen_window_over",
                    f"this resolution is older than {self._settings.reopen_days} days: it "
                    "can no longer be confirmed or reopened; if you still need help, please "
                    "open a new request",
                    [
                        {
                            "field": "to",
                            "message": "the reopen window is over",
                            "type": "reopen_window_over",
                            "allowed": [],
                        }
                    ],
                )
            actor = self._actor(seen_as, caller, row)
            await self._move(uow, row, data.to, reason=data.reason, actor=actor, now=now)
        return StatusChangedRead(
            number=format_number(self._settings.number_prefix, row.number),
            from_status=row.status,
            to_status=data.to,
            at=now,
        )

    async def give_feedback(
        self, number: str, data: FeedbackCreate, *, caller: Caller, access_key: str | None
    ) -> FeedbackRead:
        now = utc_now()
        try:
            async with self._unit_of_work() as uow:
                row, seen_as = await self._ticket(uow, number, caller, access_key)
                if seen_as != "requester":
                    raise forbidden("only the ticket's requester rates its resolution")
                if row.status not in RATEABLE:
                    raise ApiError(
                        409,
                        "not_resolved",
                        f"{number} is {_words(row.status)}: it can be rated once resolved",
                    )
                if await repository.feedback_of(uow.conn, row.id) is not None:
                    raise _feedback_given(number)
                await repository.add_feedback(
                    uow.conn, ticket_id=row.id, rating=data.rating, comment=data.comment, at=now
                )
                await repository.add_timeline(
                    uow.conn,
                    ticket_id=row.id,
                    at=now,
                    kind="feedback",
                    summary=f"Rated {data.rating} of 5 by {row.requester_name}.",
                )
                formatted = format_number(self._settings.number_prefix, row.number)
                await uow.publish(
                    FeedbackSubmitted(number=formatted, rating=data.rating, comment=data.comment),
                    ticket_id=row.id,
                )
        except IntegrityError as error:
            # Two ratings at once: the ticket's key let only one in.
            raise _feedback_given(number) from error
        return FeedbackRead(number=formatted, rating=data.rating, comment=data.comment, at=now)

    async def update(
        self, number: str, data: TicketUpdate, *, caller: Caller, access_key: str | None
    ) -> None:
        """Re-classifies the ticket; only fields whose value changes are changes."""
        now = utc_now()
        async with self._unit_of_work() as uow:
            row, seen_as = await self._ticket(uow, number, caller, access_key)
            if seen_as != "staff":
                raise forbidden("only staff re-classify a ticket")
            if row.status == "closed":
                raise closed(number)
            wanted = data.model_dump(include=data.model_fields_set)
            # On the row as locked: two PATCHes at once cannot make a pair neither allows (D17).
            check_recategorisation(
                self._categories,
                {k: v for k, v in wanted.items() if k in ("category", "subcategory")},
                row.category,
                row.subcategory,
            )
            changes = {
                field: value for field, value in wanted.items() if row._mapping[field] != value
            }
            if not changes:
                return
            # A person's category is no longer routing's guess.
            reclassified = {"auto_classified": False} if "category" in changes else {}
            await repository.update_ticket(
                uow.conn, row.id, updated_at=now, **changes, **reclassified
            )
            actor = self._actor(seen_as, caller, row)
            said = ", ".join(
                f"{field} {row._mapping[field] or 'none'} → {value or 'none'}"
                for field, value in changes.items()
            )
            await repository.add_timeline(
                uow.conn,
                ticket_id=row.id,
                at=now,
                kind="updated",
                summary=f"Re-classified by {actor.name}: {said}.",
                # Triage is the desk's business; the requester sees the priority it leads to.
                public=False,
            )
            await uow.publish(
                TicketUpdated(
                    number=format_number(self._settings.number_prefix, row.number),
                    changes=changes,
                    updated_by=actor.name,
                ),
                ticket_id=row.id,
            )

    async def request_escalation(
        self, number: str, data: EscalationCreate, *, caller: Caller, access_key: str | None
    ) -> EscalationRequestedRead:
        now = utc_now()
        async with self._unit_of_work() as uow:
            row = await self._active_for_staff(uow, number, caller, access_key, "escalated")
            actor = agent(caller)
            await repository.add_timeline(
                uow.conn,
                ticket_id=row.id,
                at=now,
                kind="escalation_requested",
                summary=f"{actor.name} asked {data.to_group} to help: {data.reason}",
                # Internal text; the requester sees the team that has it once routing answers.
                public=False,
            )
            await lose_first_contact_resolution(
                uow, row, why=f"{actor.name} asked {data.to_group} to help", now=now
            )
            await repository.update_ticket(uow.conn, row.id, updated_at=now)
            formatted = format_number(self._settings.number_prefix, row.number)
            await uow.publish(
                TicketEscalationRequested(
                    number=formatted,
                    to_group=data.to_group,
                    reason=data.reason,
                    requested_by=actor.name,
                ),
                ticket_id=row.id,
            )
        return EscalationRequestedRead(number=formatted, to_group=data.to_group, requested_at=now)

    async def request_hand_back(
        self, number: str, data: HandBackCreate, *, caller: Caller, access_key: str | None
    ) -> HandBackRequestedRead:
        """The group helping with an escalated ticket is done: the work goes back to the group
        that asked, one tier at a time (D3). Routing knows the way back, and answers with
        ticket.handed_back, or ticket.hand_back_refused if the ticket is not escalated."""
        now = utc_now()
        async with self._unit_of_work() as uow:
            row = await self._active_for_staff(uow, number, caller, access_key, "handed back")
            actor = agent(caller)
            await repository.add_timeline(
                uow.conn,
                ticket_id=row.id,
                at=now,
                kind="hand_back_requested",
                summary=f"{actor.name} handed it back from {row.group_name or row.group_id}: "
                f"{data.reason}",
                public=False,
            )
            await repository.update_ticket(uow.conn, row.id, updated_at=now)
            formatted = format_number(self._settings.number_prefix, row.number)
            await uow.publish(
                TicketHandBackRequested(
                    number=formatted,
                    reason=data.reason,
                    requested_by=actor.name,
                    requested_by_id=actor.id,
                ),
                ticket_id=row.id,
            )
        return HandBackRequestedRead(number=formatted, requested_at=now)

    async def request_assignment(
        self, number: str, data: AssignmentCreate, *, caller: Caller, access_key: str | None
    ) -> AssignmentRequestedRead:
        """An agent takes the ticket, or hands it to a colleague or a group: routing decides
        (it knows who is active, in which group, and who has room) and answers with
        ticket.assigned or ticket.assignment_refused, both on the timeline."""
        now = utc_now()
        async with self._unit_of_work() as uow:
            row = await self._active_for_staff(uow, number, caller, access_key, "assigned")
            if caller.role == "agent" and data.group is not None:
                if data.group not in caller.groups:
                    raise forbidden(
                        f"{data.group} is not one of your groups: an agent hands a ticket over "
                        "within their groups (ask another group for help with an escalation)"
                    )
            if data.agent is not None and data.agent == row.owner_id:
                if data.group is None or data.group == row.group_id:
                    raise ApiError(
                        409,
                        "already_assigned",
                        f"{number} is already {data.agent}'s (group {row.group_id})",
                    )
            actor = agent(caller)
            await repository.add_timeline(
                uow.conn,
                ticket_id=row.id,
                at=now,
                kind="assignment_requested",
                summary=_assignment_words(actor, data),
                # The requester hears who handles it once routing has decided (ticket.assigned).
                public=False,
            )
            await repository.update_ticket(uow.conn, row.id, updated_at=now)
            formatted = format_number(self._settings.number_prefix, row.number)
            await uow.publish(
                TicketAssignmentRequested(
                    number=formatted,
                    agent=data.agent,
                    group=data.group,
                    reason=data.reason,
                    requested_by=actor.name,
                    requested_by_id=actor.id,
                    # An agent hands over within their groups; managers and admins anywhere.
                    within_groups=sorted(caller.groups) if caller.role == "agent" else None,
                ),
                ticket_id=row.id,
            )
        return AssignmentRequestedRead(
            number=formatted, agent=data.agent, group=data.group, requested_at=now
        )

    async def _active_for_staff(
        self, uow: UnitOfWork, number: str, caller: Caller, access_key: str | None, done: str
    ) -> Any:
        """The ticket, locked, for a change only staff make and only while it is active."""
        row, seen_as = await self._ticket(uow, number, caller, access_key)
        if seen_as != "staff":
            raise forbidden(f"only staff have a ticket {done}")
        if row.status not in ACTIVE:
            raise ApiError(
                409,
                "ticket_not_active",
                f"{number} is {_words(row.status)}: only an active ticket is {done}",
            )
        return row

    async def _move(
        self,
        uow: UnitOfWork,
        row: Any,
        to: workflow.Status,
        *,
        reason: str | None,
        actor: Actor,
        now: datetime,
    ) -> None:
        await record_move(
            uow, row, to, reason=reason, actor=actor, now=now, prefix=self._settings.number_prefix
        )

    async def _ticket(
        self, uow: UnitOfWork, number: str, caller: Caller, access_key: str | None
    ) -> tuple[Any, Audience]:
        sequence = parse_number(self._settings.number_prefix, number)
        if sequence is None:
            raise not_found(number)
        row = await repository.ticket_for_change(uow.conn, sequence)
        if row is None:
            raise not_found(number)
        seen_as = audience_of(
            caller,
            row,
            access_key,
            agents_see_all=self._settings.agents_see_all,
            number=number,
        )
        return row, seen_as

    @staticmethod
    def _actor(seen_as: Audience, caller: Caller, row: Any) -> Actor:
        if seen_as == "staff":
            return agent(caller)
        return Actor("requester", row.requester_email, row.requester_name)


# One way to add a reply and one to move a ticket, for every path that does (TicketWork's
# routes, and a phone call solved while the caller is on the line, in TicketService).


async def record_comment(
    uow: UnitOfWork,
    row: Any,
    *,
    actor: Actor,
    visibility: Visibility,
    body: str,
    now: datetime,
    prefix: str,
) -> uuid.UUID:
    """Adds the reply, its timeline entry and ticket.commented to `uow`."""
    comment_id = uuid.uuid4()
    await repository.add_comment(
        uow.conn,
        id=comment_id,
        ticket_id=row.id,
        at=now,
        author_kind=actor.kind,
        author_id=actor.id,
        author_name=actor.name,
        visibility=visibility,
        body=body,
    )
    public = visibility == "public"
    await repository.add_timeline(
        uow.conn,
        ticket_id=row.id,
        at=now,
        kind="commented" if public else "internal_note",
        summary=f"Reply from {actor.name}." if public else f"Internal note by {actor.name}.",
        public=public,
    )
    await repository.update_ticket(uow.conn, row.id, updated_at=now)
    if public and actor.kind == "agent":
        # The first public staff reply is the first response (sla stops that clock).
        await repository.record_first_response(uow.conn, row.id, now)
    await uow.publish(
        TicketCommented(
            number=format_number(prefix, row.number),
            comment_id=str(comment_id),
            author_kind=actor.kind,
            author_name=actor.name,
            # notify must not tell a requester of an internal note: it reads this.
            visibility=visibility,
            body=body,
        ),
        ticket_id=row.id,
    )
    return comment_id


async def record_move(
    uow: UnitOfWork,
    row: Any,
    to: workflow.Status,
    *,
    reason: str | None,
    actor: Actor,
    now: datetime,
    prefix: str,
) -> None:
    """Moves the ticket in `row` (as it was read) to `to`: the status, its timeline entry and
    ticket.status_changed, in `uow`. Whether the move is allowed is the caller's check."""
    values: dict[str, Any] = {"status": to, "updated_at": now}
    # The agents' SLA filter and sort follow the status: a settled ticket's clocks count no more.
    values.update(sla_state.ticket_summary_of(row, status=to))
    if to == "resolved":
        values["resolved_at"] = now
        # Whose resolution it is (first-contact resolution asks: the first owner's?).
        values["resolved_by"] = actor.id if actor.kind == "agent" else None
    elif to == "open" and row.status == "resolved":
        # Reopened: the next resolution opens a new window, and it is no first-contact
        # resolution any more, whoever resolves it next (D4).
        values.update(resolved_at=None, resolved_by=None, reopened=True)
    await repository.update_ticket(uow.conn, row.id, **values)
    because = f": {reason}" if reason else ""
    await repository.add_timeline(
        uow.conn,
        ticket_id=row.id,
        at=now,
        kind="status_changed",
        summary=f"{_words(row.status)} → {_words(to)} by {actor.name}{because}",
    )
    if to == "open" and row.status == "resolved":
        await lose_first_contact_resolution(uow, row, why=f"reopened by {actor.name}", now=now)
    await uow.publish(
        TicketStatusChanged(
            number=format_number(prefix, row.number),
            from_status=row.status,
            to_status=to,
            reason=reason,
            changed_by=actor.name,
        ),
        ticket_id=row.id,
    )


async def lose_first_contact_resolution(
    uow: UnitOfWork, row: Any, *, why: str, now: datetime
) -> None:
    """A ticket solved during the call is a first-contact resolution only until it is reopened
    or escalated (D4): the flag is cleared in `uow`, with a timeline entry saying why. No event
    of its own: the ticket.status_changed (resolved → open) or ticket.escalation_requested
    published in the same transaction carries the fact, and routing's reports will compute
    first-contact resolution from the events."""
    if not row.first_contact_resolution:
        return
    await repository.update_ticket(uow.conn, row.id, first_contact_resolution=False)
    await repository.add_timeline(
        uow.conn,
        ticket_id=row.id,
        at=now,
        kind="first_contact_resolution_lost",
        summary=f"No longer resolved at first contact: {why}.",
        public=False,
    )


def _follow_up(
    row: Any,
    body: str,
    caller: Caller,
    prefix: str,
    *,
    why: str,
    categories: Sequence[Category],
) -> FollowUpWanted:
    """The new ticket a late reply opens: the same requester and classification, the reply as
    its description and the answers to its category's intake fields (D17: asked once); impact
    and urgency are the new problem's, for the desk to judge. Built from the stored ticket,
    which was validated when it came in; the desk's categories may have changed since, so the
    classification keeps only what they still declare (a reply is never refused for it)."""
    # The requester's portal session, or a script holding the ticket's key.
    channel: Channel = "portal" if caller.role == "requester" else "api"
    category, subcategory, fields = still_declared(
        categories, row.category, row.subcategory, dict(row.fields or {})
    )
    ticket = TicketCreate.model_construct(
        subject=f"Re: {row.subject}"[:MAX_SUBJECT],
        description=body,
        requester=RequesterCreate.model_construct(
            name=row.requester_name,
            email=row.requester_email,
            phone=row.requester_phone,
            locale=row.requester_locale,
            preferred_channel=row.preferred_channel,
        ),
        type=row.type,
        category=category,
        subcategory=subcategory,
        item=row.item,
        impact=None,
        urgency=None,
        fields=fields,
        channel=channel,
        resolved_during_call=None,
    )
    followed = FollowedTicket(
        id=row.id, sequence=row.number, number=format_number(prefix, row.number), why=why
    )
    return FollowUpWanted(ticket=ticket, follows=followed)


def _words(status: str) -> str:
    return status.replace("_", " ")


def _not_allowed(
    current: str, wanted: str, allowed: tuple[str, ...], *, by_requester: bool
) -> ApiError:
    who = "a requester" if by_requester else "staff"
    options = ", ".join(allowed) or "none"
    return ApiError(
        409,
        "transition_not_allowed",
        f"{who} cannot move a ticket from '{current}' to '{wanted}'; allowed: {options}",
        [
            {
                "field": "to",
                "message": f"from '{current}' the allowed targets are: {options}",
                "type": "transition_not_allowed",
                "from": current,
                "allowed": list(allowed),
            }
        ],
    )


def _feedback_given(number: str) -> ApiError:
    return ApiError(409, "feedback_given", f"{number} has been rated already; thank you")


def _assignment_words(actor: Actor, data: AssignmentCreate) -> str:
    if data.agent is not None and data.agent == actor.id:
        wanted = "to take this ticket"
    elif data.agent is not None:
        wanted = f"for {data.agent} to take this ticket"
    else:
        wanted = "for someone to take this ticket"
    within = f" in {data.group}" if data.group is not None else ""
    why = f": {data.reason}" if data.reason else "."
    return f"{actor.name} asked {wanted}{within}{why}"
