"""/api/v1/tickets: open a ticket, and read it as its requester."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from spoc_intake.api.deps import Container, IdempotencyKey, RequesterKey, TicketNumber
from spoc_intake.schemas import TicketCreate, TicketCreatedRead, TicketRead
from spoc_intake.views import ticket_for_requester
from spoc_platform.web import ApiError

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such ticket, or not yours (the two are not told apart)"},
    413: {"description": "Body too large"},
    422: {"description": "Invalid request; `error.details` names each bad field"},
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TicketCreatedRead,
    responses=ERRORS,
    summary="Open a ticket; the answer carries its tracking number and the requester's key",
)
async def create_ticket(
    data: TicketCreate, container: Container, key: IdempotencyKey, response: Response
) -> dict[str, object]:
    if not container.settings.anonymous_intake:
        raise ApiError(401, "unauthenticated", "anonymous intake is switched off")
    outcome = await container.tickets.create(data, idempotency_key=key)
    response.headers["Location"] = f"/api/v1/tickets/{outcome.body['number']}"
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return outcome.body


@router.get(
    "/{number}",
    response_model=TicketRead,
    responses=ERRORS,
    summary="A ticket as its requester sees it (X-Access-Key header or ?key=)",
)
async def read_ticket(
    number: TicketNumber, container: Container, access_key: RequesterKey
) -> TicketRead:
    return await ticket_for_requester(
        container.runtime.engine, container.settings.number_prefix, number, access_key
    )
