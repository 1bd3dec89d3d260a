"""/api/v1/tickets: open a ticket, and read it as its requester."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from spoc_intake.api.deps import Container, IdempotencyKey, RequesterKey, TicketNumber
from spoc_intake.schemas import TicketCreate, TicketCreatedRead, TicketRead
from spoc_intake.views import ticket_for_requester
from spoc_platform.openapi import error_response
from spoc_platform.web import ApiError

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TicketCreatedRead,
    responses={
        401: error_response(401, "Anonymous intake is switched off; code `unauthenticated`"),
        422: error_response(
            422,
            "Invalid request (`error.details` names each bad field, or holds one `json_invalid` "
            "detail without a field for a body that is not valid JSON; code "
            "`validation_error`), or an Idempotency-Key already used with another body "
            "(`idempotency_key_reused`)",
        ),
        503: error_response(503),
    },
    summary="Open a ticket; the answer carries its tracking number and the requester's key",
)
async def create_ticket(
    data: TicketCreate, container: Container, key: IdempotencyKey, response: Response
) -> dict[str, object]:
    if not container.settings.anonymous_intake:
        raise ApiError(401, "unauthenticated", "anonymous intake is switched off")
    outcome = await container.tickets.create(data, idempotency_key=key)
    # Under the prefix a proxy serves intake at, like every link intake gives.
    root = container.settings.root_path
    response.headers["Location"] = f"{root}/api/v1/tickets/{outcome.body['number']}"
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return outcome.body


@router.get(
    "/{number}",
    response_model=TicketRead,
    responses={
        404: error_response(
            404,
            "No such ticket, or not yours (the two are not told apart); code `ticket_not_found`",
        ),
        503: error_response(503),
    },
    summary="A ticket as its requester sees it (X-Access-Key header or ?key=)",
)
async def get_ticket(
    number: TicketNumber, container: Container, access_key: RequesterKey
) -> TicketRead:
    return await ticket_for_requester(
        container.runtime.engine, container.settings.number_prefix, number, access_key
    )
