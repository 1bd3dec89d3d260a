"""Request dependencies, as Annotated aliases so routes stay short.

All are `async def`: FastAPI runs a plain `def` dependency in a worker thread, a hop per
dependency per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request

from spoc_intake.bootstrap import IntakeContainer
from spoc_intake.callers import ANONYMOUS, Caller
from spoc_intake.requester_links import caller_from_requester_session
from spoc_intake.staff_sign_in import caller_from_staff_session, refuse_cross_site
from spoc_intake.tokens import caller_from_bearer_token


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
    if x_access_key or key:
        return x_access_key or key
    cookie = request.cookies.get(access_cookie_name(number))
    if cookie:
        # CSRF, as for the sessions: the browser sends the cookie whoever made the page, so an
        # unsafe request it carries must come from the desk's own pages.
        refuse_cross_site(request, required=True)
    return cookie


RequesterKey = Annotated[str | None, Depends(requester_key)]


# Visible ASCII, spaces only inside: what an HTTP header carries unchanged (no obs-text, no
# whitespace a proxy may trim), as the IETF Idempotency-Key draft's sf-string allows.
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]([ -~]*[!-~])?$"


async def idempotency_key(
    value: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="Same key and body → the same ticket: 1–255 visible ASCII characters "
            "(spaces only between them); another body under a used key is a 422.",
            examples=["portal-form-7f3a"],
        ),
    ] = None,
) -> str | None:
    return value


IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]


async def current_caller(request: Request, container: Container) -> Caller:
    """The caller this request speaks for, from the first credential it carries: a staff
    session cookie, a bearer token, or a requester's sign-in session. Without one, the caller
    is anonymous (and may still prove a ticket is theirs with its access key, per ticket)."""
    engine = container.runtime.engine
    return (
        await caller_from_staff_session(request, engine)
        or await caller_from_bearer_token(request, engine)
        or await caller_from_requester_session(request, engine)
        or ANONYMOUS
    )


CurrentCaller = Annotated[Caller, Depends(current_caller)]
