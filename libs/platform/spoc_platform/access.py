"""Who may read the operational routes: /metrics (Prometheus) and the desk views that name
the staff (routing's groups and agents, SLA's calendars). The public port keeps the API, the
pages, /healthz and /readyz open; these need a bearer token once one is configured.

Without any token: open in development (the embedded default on a laptop, `spoc status`
reading it), absent in production (404, as for any unknown path), so that a deployment that
forgot the token exposes nothing rather than everything.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import Depends, Request
from pydantic import SecretStr

from spoc_platform.web import ApiError

Token = SecretStr | str | None


def _plain(token: Token) -> str | None:
    return token.get_secret_value() if isinstance(token, SecretStr) else token


def token_guard(
    tokens: Iterable[Token], *, open_without_token: bool, realm: str
) -> Callable[[Request], None]:
    """A route dependency: `Authorization: Bearer <one of tokens>` or 401; with no token
    configured, open or 404 as `open_without_token` says."""
    expected = [t.encode() for t in map(_plain, tokens) if t]

    def guard(request: Request) -> None:
        if not expected:
            if open_without_token:
                return
            raise ApiError(404, "not_found", "Not Found")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        presented = given.strip().encode()
        # Every token compared, in constant time: how much of a guess matched, or which token
        # it was close to, must not show in how long the answer took.
        matched = [hmac.compare_digest(presented, token) for token in expected]
        if scheme.lower() != "bearer" or not any(matched):
            raise ApiError(
                401,
                "unauthenticated",
                "a valid token is required (Authorization: Bearer …)",
                headers={"WWW-Authenticate": f'Bearer realm="{realm}"'},
            )

    return guard


def guarded_by(tokens: Iterable[Token], *, open_without_token: bool, realm: str) -> list[Any]:
    """The `dependencies=` of a route or router behind `token_guard`."""
    return [Depends(token_guard(tokens, open_without_token=open_without_token, realm=realm))]
