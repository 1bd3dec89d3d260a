"""The requester's "my requests" page at /my: their tickets once signed in, else a form that
mails a sign-in link."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import TypeAdapter, ValidationError

from spoc_intake.api.deps import Container, CurrentCaller
from spoc_intake.api.portal import html_page, read_form
from spoc_intake.api.requester import LINK_SENT, REQUESTER_HOME
from spoc_intake.callers import Caller
from spoc_intake.front_door import client_address
from spoc_intake.schemas import EmailAddress, TicketList
from spoc_intake.staff_sign_in import refuse_cross_site
from spoc_intake.views import TicketFilter, dates_for, list_for_caller
from spoc_platform.dates import preferred_locale
from spoc_platform.web import ApiError

router = APIRouter(tags=["portal"], include_in_schema=False)

PAGE_SIZE = 50
_email = TypeAdapter(EmailAddress)


@router.get(REQUESTER_HOME, response_class=HTMLResponse)
async def my_requests(
    request: Request,
    container: Container,
    caller: CurrentCaller,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    if caller.role != "requester":
        return html_page("my_requests.html.j2", tickets=None)
    when = dates_for(
        preferred_locale(request.headers.get("accept-language")), container.settings.time_zone
    )
    try:
        tickets = await _their_tickets(container, caller, cursor)
    except ApiError:
        # A cursor this page did not give out: start again at the newest.
        tickets = await _their_tickets(container, caller, None)
    return html_page("my_requests.html.j2", tickets=tickets, email=caller.email, when=when)


async def _their_tickets(container: Container, caller: Caller, cursor: str | None) -> TicketList:
    # The list GET /api/v1/tickets gives a requester: their own tickets, public fields only.
    return await list_for_caller(
        container.runtime.engine,
        container.settings.number_prefix,
        caller,
        TicketFilter(),
        agents_see_all=False,
        sort="created_at",
        descending=True,
        cursor=cursor,
        limit=PAGE_SIZE,
    )


@router.post(REQUESTER_HOME, response_class=HTMLResponse)
async def ask_for_sign_in_link_by_form(request: Request, container: Container) -> Response:
    """The form's way to POST /api/v1/requester/links: the same limits, the same answer
    whether the address is known."""
    # Another site's form may not spend the address's budget of links.
    refuse_cross_site(request, required=False)
    address = (await read_form(request)).get("email", "")
    try:
        email = _email.validate_python(address)
    except ValidationError:
        problem = "Enter the e-mail address you opened your requests with."
        return html_page(
            "my_requests.html.j2", status_code=422, tickets=None, address=address, problem=problem
        )
    try:
        admitted = await container.front_door.admit(
            "sign_in_link", client=client_address(request), recipient=email
        )
    except ApiError as refused:
        answer = html_page(
            "my_requests.html.j2",
            status_code=refused.status,
            tickets=None,
            address=address,
            problem="Too many links were asked for; please try again later."
            if refused.status == 429
            else "The desk does not accept this request.",
        )
        answer.headers.update(refused.headers or {})
        return answer
    if admitted:
        await container.requester_sign_in.request_link(email)
    return html_page("my_requests.html.j2", tickets=None, sent=LINK_SENT)
