"""The requester's page for one ticket, reached from the link in every message they receive.

The link's ?key= is swapped for an HttpOnly cookie and dropped from the address, so it does
not linger in history, bookmarks or Referer headers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from spoc_intake.api.deps import Container, RequesterKey, TicketNumber, access_cookie_name
from spoc_intake.views import dates_for, page_for_requester
from spoc_platform.dates import preferred_locale
from spoc_platform.web import ApiError

router = APIRouter(tags=["portal"], include_in_schema=False)

_pages = Environment(
    loader=PackageLoader("spoc_intake", "templates"), autoescape=select_autoescape(["j2"])
)
COOKIE_DAYS = 30


@router.get("/t/{number}", response_class=HTMLResponse)
async def ticket_page(
    number: TicketNumber, request: Request, container: Container, access_key: RequesterKey
) -> Response:
    prefix = container.settings.number_prefix
    try:
        found = await page_for_requester(container.runtime.engine, prefix, number, access_key)
    except ApiError:
        return HTMLResponse(
            "<!doctype html><title>Not found</title><h1>No such request</h1>"
            "<p>Check the link in your e-mail; it only opens your own request.</p>",
            status_code=404,
        )
    ticket = found.ticket
    if "key" in request.query_params:
        # Under the prefix a proxy serves intake at (root_path), or the browser leaves Spoc.
        page = f"{request.scope.get('root_path', '')}/t/{ticket.number}"
        redirect = RedirectResponse(page, status_code=303)
        redirect.set_cookie(
            access_cookie_name(ticket.number),
            access_key or "",
            max_age=COOKIE_DAYS * 86400,
            httponly=True,
            samesite="lax",
            # Production always: a proxy whose X-Forwarded-Proto is not trusted (see
            # SPOC_FORWARDED_ALLOW_IPS) must not make the key travel in clear text.
            secure=request.url.scheme == "https" or container.settings.environment == "production",
        )
        return redirect
    # Dates in the requester's language (as given, else the browser's), on the desk's clock.
    locale = found.locale or preferred_locale(request.headers.get("accept-language"))
    when = dates_for(locale, container.settings.time_zone)
    html = _pages.get_template("ticket.html.j2").render(t=ticket, when=when)
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})
