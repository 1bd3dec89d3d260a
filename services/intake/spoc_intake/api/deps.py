"""Request dependencies, as Annotated aliases so routes stay short.

All are `async def`: FastAPI runs a plain `def` dependency in a worker thread, a hop per
dependency per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request

from spoc_intake.bootstrap import IntakeContainer
from spoc_platform.web import ApiError


async def get_container(request: Request) -> IntakeContainer:
    container: IntakeContainer = request.app.state.container
    return container


Container = Annotated[IntakeContainer, Depends(get_container)]

ACCESS_COOKIE = "spoc_access"

# A tracking number as written in a link or a mail subject; anything longer is not one.
TicketNumber = Annotated[str, Path(max_length=32, description="e.g. SD-000123")]


def access_cookie_name(number: str) -> str:
    return f"{ACCESS_COOKIE}_{number.upper()}"


async def requester_key(
    request: Request,
    number: TicketNumber,
    x_access_key: Annotated[str | None, Header(max_length=200)] = None,
    key: Annotated[str | None, Query(max_length=200)] = None,
) -> str | None:
    """The requester's access key from the header, the link's ?key=, or the portal cookie."""
    return x_access_key or key or request.cookies.get(access_cookie_name(number))


RequesterKey = Annotated[str | None, Depends(requester_key)]


async def idempotency_key(
    value: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="Same key and body → the same ticket."),
    ] = None,
) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= 255 or not value.isprintable():
        raise ApiError(
            422,
            "validation_error",
            "Idempotency-Key must be 1–255 printable characters",
            [
                {
                    "field": "header.Idempotency-Key",
                    "message": "1–255 printable characters",
                    "type": "value_error",
                }
            ],
        )
    return value


IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]
