"""The requester's page for one ticket, reached from the link in every message they receive.

The link's ?key= is swapped for an HttpOnly cookie and dropped from the address, so it does
not linger in history, bookmarks or Referer headers."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from spoc_intake.api.deps import (
    Container,
    CurrentCaller,
    RequesterKey,
    TicketNumber,
    access_cookie_name,
)
from spoc_intake.views import dates_for, page_for_requester
from spoc_platform.dates import preferred_locale
from spoc_platform.web import ApiError

router = APIRouter(tags=["portal"], include_in_schema=False)

_pages = Environment(
    loader=PackageLoader("spoc_intake", "templates"), autoescape=select_autoescape(["j2"])
)
COOKIE_DAYS = 30
# The requester's pages with forms: never cached, and no address sent on but the desk's origin.
# Not no-referrer: under it a browser sends `Origin: null` with a same-origin form, which the
# cross-site check must refuse.
FORM_PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "strict-origin"}
MAX_FORM_FIELDS = 10


def html_page(template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """One of the requester's pages, autoescaped, with `FORM_PAGE_HEADERS`."""
    html = _pages.get_template(template).render(**values)
    return HTMLResponse(html, status_code=status_code, headers=FORM_PAGE_HEADERS)


async def read_form(request: Request) -> dict[str, str]:
    """The fields of an HTML form's urlencoded body (the first value of each); anything else
    reads as an empty form, which the page then asks to fill in."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    try:
        text = (await request.body()).decode()
        fields = parse_qs(text, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in fields.items()}


@router.get("/t/{number}", response_class=HTMLResponse)
async def ticket_page(
    number: TicketNumber,
    request: Request,
    container: Container,
    access_key: RequesterKey,
    caller: CurrentCaller,
) -> Response:
    prefix = container.settings.number_prefix
    try:
        # The requester's view: public entries and replies only, never an internal note.
        found = await page_for_requester(
            container.runtime.engine, prefix, number, access_key, caller
        )
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
