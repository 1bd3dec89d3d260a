"""The requester's page for one ticket, reached from the link in every message they receive.

The link's ?key= is swapped for an HttpOnly cookie and dropped from the address, so it does
not linger in history, bookmarks or Referer headers."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from spoc_intake.api.deps import Container, RequesterKey, TicketNumber, access_cookie_name
from spoc_intake.views import ticket_for_requester
from spoc_platform.web import ApiError

router = APIRouter(tags=["portal"], include_in_schema=False)

_pages = Environment(
    loader=PackageLoader("spoc_intake", "templates"), autoescape=select_autoescape(["j2"])
)
COOKIE_DAYS = 30


def _when(value: datetime | None) -> str:
    return value.strftime("%a %d %b %Y, %H:%M %Z") if value else "not set yet"


@router.get("/t/{number}", response_class=HTMLResponse)
async def ticket_page(
    number: TicketNumber, request: Request, container: Container, access_key: RequesterKey
) -> Response:
    prefix = container.settings.number_prefix
    try:
        ticket = await ticket_for_requester(container.runtime.engine, prefix, number, access_key)
    except ApiError:
        return HTMLResponse(
            "<!doctype html><title>Not found</title><h1>No such request</h1>"
            "<p>Check the link in your e-mail; it only opens your own request.</p>",
            status_code=404,
        )
    if "key" in request.query_params:
        redirect = RedirectResponse(f"/t/{ticket.number}", status_code=303)
        redirect.set_cookie(
            access_cookie_name(ticket.number),
            access_key or "",
            max_age=COOKIE_DAYS * 86400,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
        return redirect
    html = _pages.get_template("ticket.html.j2").render(t=ticket, when=_when)
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})
