"""/api/v1/session and /api/v1/me: staff sign in and out; any caller asks who they are."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from spoc_intake.api.deps import Container, CurrentCaller
from spoc_intake.callers import Caller
from spoc_intake.front_door import client_address
from spoc_intake.passwords import MAX_PASSWORD_LENGTH
from spoc_intake.schemas import NO_CONTROLS_PATTERN
from spoc_intake.staff_sign_in import SESSION_COOKIE, StaffSignIn, refuse_cross_site
from spoc_platform.openapi import error_response
from spoc_platform.web import ApiError, SharedPathRoute

router = APIRouter(prefix="/api/v1", tags=["session"], route_class=SharedPathRoute)

NO_STORE = {"Cache-Control": "no-store"}


def refuse_controls(value: str) -> str:
    # As schemas.OneLine refuses them, without its stripping: a password is taken as typed.
    if any(ch < " " or ch == "\x7f" for ch in value):
        raise ValueError("must not contain control characters")
    return value


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Not checked as an address: a malformed one is simply nobody's (the same 401). Control
    # characters are a 422 (PostgreSQL cannot even compare a NUL); no address has one.
    email: Annotated[
        str,
        StringConstraints(min_length=1, max_length=320),
        AfterValidator(refuse_controls),
        # Said in the document too, so a client knows before it asks.
        Field(json_schema_extra={"pattern": NO_CONTROLS_PATTERN}),
    ]
    # A password may have any character but a control one (none can be set: see passwords.py).
    password: Annotated[
        str,
        StringConstraints(min_length=1, max_length=MAX_PASSWORD_LENGTH),
        AfterValidator(refuse_controls),
        Field(json_schema_extra={"pattern": NO_CONTROLS_PATTERN}),
    ]


class MeRead(BaseModel):
    """Who the caller is: a staff member, an integration's token, or a signed-in requester."""

    # The staff account's id, the token's id, or the requester's address.
    id: str | None
    role: str
    name: str | None
    email: str | None
    groups: list[str]


def _me(caller: Caller) -> MeRead:
    if caller.role is None:
        raise ApiError(401, "unauthenticated", "not signed in")
    return MeRead(
        id=caller.subject_id,
        role=caller.role,
        name=caller.name,
        email=caller.email,
        groups=sorted(caller.groups),
    )


def _cookie_path(request: Request) -> str:
    # Under the prefix a proxy serves intake at (root_path): the cookie goes to intake only.
    return request.scope.get("root_path", "") or "/"


@router.post(
    "/session",
    response_model=MeRead,
    responses={
        401: error_response(
            401,
            "Wrong address or password, an inactive account, or one locked after repeated "
            "failures (the same answer for each); code `sign_in_failed`",
        ),
        403: error_response(
            403,
            "Sent from another site's page (code `cross_site_request`), or from a blocked "
            "network (`blocked`)",
        ),
        429: error_response(
            429,
            "Too many sign-ins from this client or for this address; code `rate_limited`, "
            "with Retry-After",
        ),
        503: error_response(503),
    },
    summary="Sign a staff member in: the answer sets the session cookie",
)
async def sign_in(
    data: SignIn, request: Request, response: Response, container: Container
) -> MeRead:
    # Login CSRF: another site's page must not sign a browser into the attacker's account.
    refuse_cross_site(request, required=False)
    # Each attempt costs an argon2 verification: budgets per client and per address tried.
    await container.front_door.admit(
        "sign_in", client=client_address(request), recipient=data.email
    )
    signed_in = await container.staff_sign_in.sign_in(data.email, data.password)
    response.set_cookie(
        SESSION_COOKIE,
        signed_in.token,
        max_age=container.settings.staff_session_hours * 3600,
        path=_cookie_path(request),
        httponly=True,
        samesite="strict",
        # Production always: a proxy whose X-Forwarded-Proto is not trusted (see
        # SPOC_FORWARDED_ALLOW_IPS) must not make the session travel in clear text.
        secure=request.url.scheme == "https" or container.settings.environment == "production",
    )
    response.headers.update(NO_STORE)
    return _me(signed_in.caller)


@router.delete(
    "/session",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        401: error_response(
            401,
            "A bearer token that is not valid (unknown, revoked or expired); code "
            "`unauthenticated`",
        ),
        403: error_response(403, "Sent from another site's page; code `cross_site_request`"),
        503: error_response(503),
    },
    summary="Sign out: the session ends on the server, and the cookie is cleared",
)
async def sign_out(request: Request, container: Container, caller: CurrentCaller) -> Response:
    sign_in_service: StaffSignIn = container.staff_sign_in
    await sign_in_service.sign_out(caller)
    answer = Response(status_code=status.HTTP_204_NO_CONTENT, headers=NO_STORE)
    answer.delete_cookie(
        SESSION_COOKIE,
        path=_cookie_path(request),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" or container.settings.environment == "production",
    )
    return answer


@router.get(
    "/me",
    response_model=MeRead,
    responses={401: error_response(401, "Not signed in; code `unauthenticated`")},
    summary="Who the caller is",
)
async def get_current_caller(caller: CurrentCaller, response: Response) -> MeRead:
    response.headers.update(NO_STORE)
    return _me(caller)
