"""Requesters sign in by mailed link: /api/v1/requester/links asks for one, /requester/sign-in
shows it and its button's POST uses it, /api/v1/requester/session (or the button on /my)
signs out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict

from spoc_intake.api.deps import Container
from spoc_intake.api.portal import html_page, read_form
from spoc_intake.front_door import client_address
from spoc_intake.requester_links import REQUESTER_SESSION_COOKIE
from spoc_intake.schemas import EmailAddress
from spoc_intake.staff_sign_in import refuse_cross_site
from spoc_platform.openapi import error_response
from spoc_platform.web import ApiError, SharedPathRoute

router = APIRouter(prefix="/api/v1/requester", tags=["requester"], route_class=SharedPathRoute)
pages = APIRouter(tags=["portal"], include_in_schema=False)

# The secret-bearing answers and pages: no cache, and no address (with its token) sent on.
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
# Where a requester lands once signed in: the list of their own tickets (the web pages).
REQUESTER_HOME = "/my"
LINK_SENT = (
    "If this address has requests with us, a sign-in link is on its way to it. "
    "It works once, for a limited time."
)


class SignInLinkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Read as ticket creation reads it, so the address matches the one its tickets hold.
    email: EmailAddress


class SignInLinkAccepted(BaseModel):
    status: str = "accepted"
    message: str = LINK_SENT


def _secure(request: Request, container: Container) -> bool:
    # Production always: a proxy whose X-Forwarded-Proto is not trusted (see
    # SPOC_FORWARDED_ALLOW_IPS) must not make the session travel in clear text.
    return request.url.scheme == "https" or container.settings.environment == "production"


def _cookie_path(container: Container) -> str:
    # Under the prefix a proxy serves intake at: the cookie goes to intake only.
    return container.settings.root_path or "/"


@router.post(
    "/links",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SignInLinkAccepted,
    responses={
        403: error_response(403, "Requests from a blocked network; code `blocked`"),
        422: error_response(422, "Not an e-mail address; code `validation_error`"),
        429: error_response(
            429, "Too many links asked for this client or address; code `rate_limited`"
        ),
        503: error_response(503),
    },
    summary="Mail a one-time sign-in link (the same answer whether the address is known)",
)
async def ask_for_sign_in_link(
    data: SignInLinkCreate, request: Request, container: Container, response: Response
) -> SignInLinkAccepted:
    email = str(data.email)
    # Spends from the client's and the address's budgets whether or not the address is
    # known, so the limits tell nothing either; False: a blocked address, sent nothing.
    admitted = await container.front_door.admit(
        "sign_in_link", client=client_address(request), recipient=email
    )
    if admitted:
        await container.requester_sign_in.request_link(email)
    response.headers.update(PRIVATE)
    return SignInLinkAccepted()


@router.delete(
    "/session",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={503: error_response(503)},
    summary="Sign a requester out: the session ends on the server, and the cookie is cleared",
)
async def end_requester_session(request: Request, container: Container) -> Response:
    await container.requester_sign_in.sign_out(request.cookies.get(REQUESTER_SESSION_COOKIE))
    answer = Response(status_code=status.HTTP_204_NO_CONTENT, headers=PRIVATE)
    _clear_session_cookie(answer, request, container)
    return answer


@pages.post(f"{REQUESTER_HOME}/sign-out", response_class=HTMLResponse)
async def sign_out_by_form(request: Request, container: Container) -> Response:
    """The "my requests" page's sign-out button: the session ends on the server (a copy of
    the cookie signs nobody in) and the cookie is cleared; then the page, signed out."""
    try:
        # Another site's page may not sign the requester out behind their back.
        refuse_cross_site(request, required=True)
    except ApiError:
        return html_page(
            "my_requests.html.j2",
            status_code=403,
            tickets=None,
            notice="Sign out from the desk's own page.",
        )
    await container.requester_sign_in.sign_out(request.cookies.get(REQUESTER_SESSION_COOKIE))
    # 303: the page is fetched with a GET, so a reload posts nothing again.
    answer = RedirectResponse(
        f"{container.settings.root_path}{REQUESTER_HOME}", status_code=303, headers=PRIVATE
    )
    _clear_session_cookie(answer, request, container)
    return answer


def _clear_session_cookie(answer: Response, request: Request, container: Container) -> None:
    answer.delete_cookie(
        REQUESTER_SESSION_COOKIE,
        path=_cookie_path(container),
        httponly=True,
        samesite="lax",
        secure=_secure(request, container),
    )


@pages.get("/requester/sign-in", response_class=HTMLResponse)
async def show_sign_in_link(
    token: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The page a mailed link opens. It never uses the link: mail scanners fetch links before
    the requester does, and a link followed from another site must not sign anyone in (as the
    attacker, into the attacker's requests). Its button's POST, from this page only, does."""
    if not token:
        return html_page("sign_in.html.j2", status_code=400, token=None)
    # The token leaves the address bar's page only in the form: no-store keeps it out of the
    # cache, and the page sends no address on (see FORM_PAGE_HEADERS).
    return html_page("sign_in.html.j2", token=token)


@pages.post("/requester/sign-in", response_class=HTMLResponse)
async def use_sign_in_link(request: Request, container: Container) -> Response:
    try:
        refuse_cross_site(request, required=True)
    except ApiError:
        return html_page("sign_in.html.j2", status_code=403, token=None, refused="cross_site")
    opened = await container.requester_sign_in.sign_in((await read_form(request)).get("token"))
    if opened is None:
        return html_page("sign_in.html.j2", status_code=400, token=None)
    settings = container.settings
    # Redirected (303: the list is fetched with a GET), so a reload does not post the used
    # link again.
    answer = RedirectResponse(
        f"{settings.root_path}{REQUESTER_HOME}", status_code=303, headers=PRIVATE
    )
    answer.set_cookie(
        REQUESTER_SESSION_COOKIE,
        opened.secret,
        max_age=settings.requester_session_hours * 3600,
        path=_cookie_path(container),
        httponly=True,
        # Lax, not Strict: a later link from the requester's mail (another site) to their
        # ticket must still find them signed in.
        samesite="lax",
        secure=_secure(request, container),
    )
    return answer
