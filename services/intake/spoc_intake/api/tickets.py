"""/api/v1/tickets: open, list and read tickets; reply on them and move them along the workflow."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from spoc_intake.api.deps import (
    Container,
    CurrentCaller,
    IdempotencyKey,
    RequesterKey,
    TicketNumber,
)
from spoc_intake.front_door import client_address
from spoc_intake.schemas import (
    AssignmentCreate,
    AssignmentRequestedRead,
    Channel,
    CommentRead,
    EscalationCreate,
    EscalationRequestedRead,
    FeedbackCreate,
    FeedbackRead,
    FollowUpCreatedRead,
    HandBackCreate,
    HandBackRequestedRead,
    PublicTicketCreate,
    RequesterCommentCreate,
    SlaAttention,
    StaffCommentCreate,
    StatusChange,
    StatusChangedRead,
    TicketAgentRead,
    TicketCreate,
    TicketCreatedRead,
    TicketList,
    TicketRead,
    TicketStatus,
    TicketType,
    TicketUpdate,
)
from spoc_intake.views import TicketFilter, list_for_caller, ticket_for_caller
from spoc_platform.openapi import RETRY_AFTER, error_response
from spoc_platform.web import ApiError, SharedPathRoute

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"], route_class=SharedPathRoute)

SortOrder = Literal[
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
    "priority",
    "-priority",
    # Staff: the nearest due time of a clock still counting down (overdue first).
    "sla_due_at",
    "-sla_due_at",
]
DEFAULT_PAGE = 25
MAX_PAGE = 100
# Filters are matched as text; control characters (NUL above all) are never in a ticket.
NO_CONTROLS = r"^[^\x00-\x1f\x7f]*$"

# Every route that asks who is calling: a credential that is sent must be valid.
BAD_CREDENTIALS = error_response(
    401,
    "A bearer token or session that is not valid (unknown, revoked or expired); code "
    "`unauthenticated`",
)
NOT_FOUND = error_response(
    404, "No such ticket, or not yours (the two are not told apart); code `ticket_not_found`"
)

# A late reply opens a new ticket: with anonymous intake off, only by a known caller.
FOLLOW_UP_NEEDS_SIGN_IN = (
    "anonymous intake is switched off: this ticket takes no more replies, so yours would open "
    "a new one; sign in by the link the desk mails you (POST /api/v1/requester/links) and "
    "reply again"
)

# Channels only the desk itself receives on: a phone call an agent logs, a mail notify reads.
ANONYMOUS_CANNOT_CLAIM = frozenset({"phone", "email"})


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TicketCreatedRead,
    responses={
        401: error_response(401, "Anonymous intake is switched off; code `unauthenticated`"),
        403: error_response(
            403,
            "The requester's address or the client's network is blocked (code `blocked`), or "
            "an integration claims a phone call, which only staff log (code `forbidden`)",
        ),
        422: error_response(
            422,
            "Invalid request (`error.details` names each bad field, or holds one `json_invalid` "
            "detail without a field for a body that is not valid JSON; code "
            "`validation_error`: with the desk's categories, every missing or wrong field of "
            "the category at once, see GET /api/v1/categories), or an Idempotency-Key already "
            "used with another body "
            "(`idempotency_key_reused`)",
        ),
        429: error_response(
            429,
            "Too many tickets from this client or for this address; code `rate_limited`, "
            "with Retry-After",
            headers=RETRY_AFTER,
        ),
        503: error_response(503),
    },
    summary="Open a ticket; the answer carries its tracking number and the requester's key",
)
async def create_ticket(
    data: TicketCreate,
    container: Container,
    key: IdempotencyKey,
    response: Response,
    request: Request,
    caller: CurrentCaller,
) -> dict[str, object]:
    # Switched off, the desk takes tickets only from callers it knows: staff, integrations
    # and requesters signed in by a mailed link.
    if caller.is_anonymous and not container.settings.anonymous_intake:
        raise ApiError(401, "unauthenticated", "anonymous intake is switched off")
    if caller.role == "integration" and data.channel == "phone":
        # A phone call is taken by a person at the desk, who owns it (D3, D4).
        raise ApiError(403, "forbidden", "only staff log a phone call")
    if not caller.is_staff:
        _held_to_the_public_model(data)
    # The public (anonymous, or a requester signed in by a mailed link) is limited and cannot
    # speak for the desk; staff and integrations are named by their credential.
    if caller.is_anonymous or caller.role == "requester":
        if data.channel in ANONYMOUS_CANNOT_CLAIM:
            # Only the desk's own staff and mail gateway take phone calls and mail.
            raise ApiError(
                422,
                "validation_error",
                "invalid request: channel",
                [
                    {
                        "field": "channel",
                        "message": f"only the desk opens a ticket by {data.channel}",
                        "type": "channel_not_allowed",
                    }
                ],
            )
        await container.front_door.admit(
            "create", client=client_address(request), recipient=str(data.requester.email)
        )
    trusted = container.front_door.trusts(client_address(request))
    outcome = await container.tickets.create(
        data, idempotency_key=key, caller=caller, trusted_network=trusted
    )
    # Under the prefix a proxy serves intake at, like every link intake gives.
    root = container.settings.root_path
    response.headers["Location"] = f"{root}/api/v1/tickets/{outcome.body['number']}"
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    # The answer carries the requester's access key: no cache may keep it.
    response.headers["Cache-Control"] = "no-store"
    return outcome.body


@router.get(
    "",
    response_model=TicketList,
    responses={
        401: error_response(
            401,
            "Anonymous callers cannot list tickets, or a credential is not valid; code "
            "`unauthenticated`",
        ),
        422: error_response(
            422,
            "Invalid filter, page size above 100, a cursor this list did not give out for "
            "this sort (`invalid_cursor`), or `sla` / `sort=sla_due_at` from a caller who is "
            "not staff (`staff_only`); code `validation_error`",
        ),
        503: error_response(503),
    },
    summary="The tickets the caller may see (staff: their groups'; requesters: their own), "
    "filtered, sorted and a page at a time",
)
async def list_tickets(
    container: Container,
    caller: CurrentCaller,
    response: Response,
    status: Annotated[
        list[TicketStatus] | None, Query(description="Any of these statuses (repeatable)")
    ] = None,
    group: Annotated[str | None, Query(max_length=100, pattern=NO_CONTROLS)] = None,
    owner: Annotated[str | None, Query(max_length=100, pattern=NO_CONTROLS)] = None,
    priority: Annotated[str | None, Query(max_length=16, pattern=NO_CONTROLS)] = None,
    type: Annotated[TicketType | None, Query()] = None,
    category: Annotated[str | None, Query(max_length=100, pattern=NO_CONTROLS)] = None,
    channel: Annotated[Channel | None, Query()] = None,
    sla: Annotated[
        list[SlaAttention] | None,
        Query(
            description="Staff: tickets whose most urgent SLA clock is in any of these states "
            "(repeatable); a breached ticket is not also listed as at risk"
        ),
    ] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=NO_CONTROLS,
            description="Text in the subject (case-insensitive; % and _ are plain characters)",
        ),
    ] = None,
    sort: Annotated[
        SortOrder, Query(description="A field, descending with a leading '-'")
    ] = "-created_at",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None, Query(max_length=500, pattern=NO_CONTROLS, description="From `next_cursor`")
    ] = None,
) -> TicketList:
    chosen = TicketFilter(
        status=tuple(status or ()),
        group=group,
        owner=owner,
        priority=priority,
        type=type,
        category=category,
        channel=channel,
        text=q or None,
        sla=tuple(sla or ()),
    )
    response.headers["Cache-Control"] = "no-store"
    return await list_for_caller(
        container.runtime.engine,
        container.settings.number_prefix,
        caller,
        chosen,
        agents_see_all=container.settings.agents_see_all,
        sort=sort.lstrip("-"),
        descending=sort.startswith("-"),
        cursor=cursor,
        limit=limit,
    )


@router.get(
    "/{number}",
    # Staff get the agent's view (everything); requesters and integrations the public one.
    response_model=TicketAgentRead | TicketRead,
    responses={
        401: BAD_CREDENTIALS,
        404: NOT_FOUND,
        503: error_response(503),
    },
    summary="A ticket: the requester's view (X-Access-Key header, ?key= or their session), "
    "or the agent's view for staff",
)
async def get_ticket(
    number: TicketNumber,
    container: Container,
    access_key: RequesterKey,
    caller: CurrentCaller,
    response: Response,
) -> TicketRead | TicketAgentRead:
    response.headers["Cache-Control"] = "no-store"
    return await ticket_for_caller(
        container.runtime.engine,
        container.settings.number_prefix,
        number,
        caller,
        access_key,
        agents_see_all=container.settings.agents_see_all,
    )


def _held_to_the_public_model(data: TicketCreate) -> None:
    """What only staff may add (`resolved_during_call`) is an unknown field from anyone else,
    refused as any unknown field is."""
    try:
        PublicTicketCreate.model_validate(data.model_dump(include=data.model_fields_set))
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]
        ) from error


def _requesters_comment(data: StaffCommentCreate) -> RequesterCommentCreate:
    """The requester's own input model: what staff may add (`visibility`) is an unknown field
    from a requester, refused as any unknown field is."""
    try:
        return RequesterCommentCreate.model_validate(data.model_dump(include=data.model_fields_set))
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]
        ) from error


@router.post(
    "/{number}/comments",
    status_code=status.HTTP_201_CREATED,
    # A reply; or, from the requester after the ticket was closed or its reopen window ended,
    # the follow-up ticket the reply opened (its number and access key, and `follows_up`).
    response_model=CommentRead | FollowUpCreatedRead,
    responses={
        401: error_response(
            401,
            "A credential that is not valid, or an anonymous reply that would open a follow-up "
            "ticket while anonymous intake is switched off (sign in by link); code "
            "`unauthenticated`",
        ),
        403: error_response(
            403, "An integration cannot reply, or a blocked network; code `forbidden`/`blocked`"
        ),
        404: NOT_FOUND,
        409: error_response(
            409,
            "Staff: the ticket is closed and takes no more replies; code `ticket_closed` (the "
            "requester's reply opens a follow-up ticket instead)",
        ),
        422: error_response(
            422,
            "Invalid body; from a requester `visibility` is an unknown field (replies are "
            "public); code `validation_error`",
        ),
        429: error_response(
            429,
            "Too many replies (or follow-up tickets) from this client; code `rate_limited`",
            headers=RETRY_AFTER,
        ),
        503: error_response(503),
    },
    summary="Reply on a ticket: requesters (public), staff (`public` or `internal`). The "
    "requester's reply to a closed ticket, or to a resolution older than the reopen window, "
    "opens a new ticket linked to it (201 with its number and access key; an Idempotency-Key "
    "makes that safe to retry)",
)
async def add_comment(
    number: TicketNumber,
    data: StaffCommentCreate,
    container: Container,
    access_key: RequesterKey,
    caller: CurrentCaller,
    key: IdempotencyKey,
    request: Request,
    response: Response,
) -> CommentRead | FollowUpCreatedRead:
    reply: StaffCommentCreate | RequesterCommentCreate = data
    if not caller.is_staff:
        reply = _requesters_comment(data)

    async def admit_reply() -> None:
        await container.front_door.admit("reply", client=client_address(request), recipient=None)

    response.headers["Cache-Control"] = "no-store"
    answer = await container.work.comment(
        number,
        reply,
        caller=caller,
        access_key=access_key,
        admit_reply=admit_reply if caller.is_anonymous else None,
    )
    if isinstance(answer, CommentRead):
        return answer
    # Too late to join the ticket: the reply opens a new one, as create_ticket would.
    if caller.is_anonymous and not container.settings.anonymous_intake:
        raise ApiError(401, "unauthenticated", FOLLOW_UP_NEEDS_SIGN_IN)

    async def admit_follow_up() -> None:
        # Limited as any new ticket is, and only that (not also as a reply); a replay of the
        # Idempotency-Key creates nothing and spends nothing.
        await container.front_door.admit(
            "create", client=client_address(request), recipient=str(answer.ticket.requester.email)
        )

    outcome = await container.tickets.follow_up(
        answer, idempotency_key=key, before_create=admit_follow_up
    )
    root = container.settings.root_path
    response.headers["Location"] = f"{root}/api/v1/tickets/{outcome.body['number']}"
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return FollowUpCreatedRead.model_validate(outcome.body)


@router.post(
    "/{number}/status",
    response_model=StatusChangedRead,
    responses={
        401: BAD_CREDENTIALS,
        403: error_response(403, "An integration cannot change a status; code `forbidden`"),
        404: NOT_FOUND,
        409: error_response(
            409,
            "Not an allowed move from the current status (`transition_not_allowed`: the "
            "detail's `allowed` lists the targets), or the requester's reopen window is over "
            "(`reopen_window_over`)",
        ),
        422: error_response(422, "Invalid body; `pending` needs a `reason`"),
        503: error_response(503),
    },
    summary="Move a ticket along the workflow (requesters: confirm or reopen a resolution)",
)
async def change_status(
    number: TicketNumber,
    data: StatusChange,
    container: Container,
    access_key: RequesterKey,
    caller: CurrentCaller,
) -> StatusChangedRead:
    return await container.work.change_status(number, data, caller=caller, access_key=access_key)


@router.patch(
    "/{number}",
    response_model=TicketAgentRead,
    responses={
        401: BAD_CREDENTIALS,
        403: error_response(403, "Only staff re-classify a ticket; code `forbidden`"),
        404: NOT_FOUND,
        409: error_response(409, "The ticket is closed; code `ticket_closed`"),
        422: error_response(
            422,
            "Invalid body, no field to change, or a category or subcategory the desk does not "
            "declare (when it declares any: GET /api/v1/categories); code `validation_error`",
        ),
        503: error_response(503),
    },
    summary="Re-classify a ticket (staff): type, category, subcategory, item, impact, urgency",
)
async def update_ticket(
    number: TicketNumber,
    data: TicketUpdate,
    container: Container,
    access_key: RequesterKey,
    caller: CurrentCaller,
    response: Response,
) -> TicketRead | TicketAgentRead:
    # The desk's categories (D17) are checked by the update, on the ticket as it locks it.
    await container.work.update(number, data, caller=caller, access_key=access_key)
    response.headers["Cache-Control"] = "no-store"
    return await ticket_for_caller(
        container.runtime.engine,
        container.settings.number_prefix,
        number,
        caller,
        access_key,
        agents_see_all=container.settings.agents_see_all,
    )


@router.post(
    "/{number}/hand-back",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=HandBackRequestedRead,
    responses={
        401: BAD_CREDENTIALS,
        403: error_response(403, "Only staff hand a ticket back; code `forbidden`"),
        404: NOT_FOUND,
        409: error_response(409, "The ticket is resolved or closed; code `ticket_not_active`"),
        503: error_response(503),
    },
    summary="Hand an escalated ticket back to the group that asked for help (D3). Routing "
    "answers with ticket.handed_back (or ticket.hand_back_refused if it is not escalated)",
)
async def request_hand_back(
    number: TicketNumber,
    data: HandBackCreate,
    container: Container,
    access_key: RequesterKey,
    caller: CurrentCaller,
) -> HandBackRequestedRead:
    return await container.work.request_hand_back(
        number, data, caller=caller, access_key=access_key
    )


@router.post(
    "/{number}/escalations",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EscalationRequestedRead,
    responses={
        401: BAD_CREDENTIALS,
        403: error_response(403, "Only staff escalate; code `forbidden`"),
        404: NOT_FOUND,
        409: error_response(409, "The ticket is resolved or closed; code `ticket_not_active`"),
        503: error_response(503),
    },
    summary="Ask another group to help (functional escalation); the owner stays. Routing "
    "decides and answers with ticket.escalated (or ticket.escalation_refused)",
)
async def request_escalation(
    number: TicketNumber,
    data: EscalationCreate,
    container: Container,
    access_key: RequesterKey,
    caller: CurrentCaller,
) -> EscalationRequestedRead:
    return await container.work.request_escalation(
        number, data, caller=caller, access_key=access_key
    )


@router.post(
    "/{number}/assignments",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=AssignmentRequestedRead,
    responses={
        401: BAD_CREDENTIALS,
        403: error_response(403, "Only staff assign; code `forbidden`"),
        404: NOT_FOUND,
        409: error_response(
            409,
            "The ticket is resolved or closed (`ticket_not_active`), or already the named "
            "agent's (`already_assigned`)",
        ),
        422: error_response(422, "Neither an agent nor a group, or a malformed id"),
        503: error_response(503),
    },
    summary="Take a ticket, or hand it to a colleague or a group (staff). Routing decides and "
    "answers with ticket.assigned (or ticket.assignment_refused), both on the timeline",
)
async def request_assignment(
    number: TicketNumber,
    data: AssignmentCreate,
    container: Container,
    access_key: RequesterKey,
    caller: CurrentCaller,
) -> AssignmentRequestedRead:
    return await container.work.request_assignment(
        number, data, caller=caller, access_key=access_key
    )


@router.post(
    "/{number}/feedback",
    status_code=status.HTTP_201_CREATED,
    response_model=FeedbackRead,
    responses={
        401: BAD_CREDENTIALS,
        403: error_response(403, "Only the ticket's requester rates it; code `forbidden`"),
        404: NOT_FOUND,
        409: error_response(
            409, "Not resolved yet (`not_resolved`), or rated already (`feedback_given`)"
        ),
        503: error_response(503),
    },
    summary="Rate a resolved ticket, once (its requester: key or session)",
)
async def give_feedback(
    number: TicketNumber,
    data: FeedbackCreate,
    container: Container,
    access_key: RequesterKey,
    caller: CurrentCaller,
) -> FeedbackRead:
    return await container.work.give_feedback(number, data, caller=caller, access_key=access_key)
