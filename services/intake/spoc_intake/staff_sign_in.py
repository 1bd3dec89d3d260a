"""Staff sign-in: passwords (argon2id), lockout with back-off, and session cookies.

A session is a server-side row holding only the SHA-256 of its cookie's 256 random bits: a
copy of the table signs nobody in, and signing out (or deactivating the account, or changing
its password) ends it at once. It ends after `staff_session_idle_minutes` unused, and at the
latest `staff_session_hours` after sign-in.

Every refused sign-in answers the same 401 after one argon2 verification's time, whether the
address is unknown, the password wrong, the account inactive, without a password, or locked:
the answer never tells which addresses are staff. A lock comes after
`staff_lockout_failures` consecutive failures and lasts a minute, doubled by each further
failure after it ends (at most an hour); while locked, not even the right password gets in,
and attempts are not counted (a guesser cannot stretch the lock on the owner)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_intake import staff_repository
from spoc_intake.callers import Caller
from spoc_intake.passwords import Passwords
from spoc_intake.settings import IntakeSettings
from spoc_platform.db import utc_now
from spoc_platform.web import ApiError

SESSION_COOKIE = "spoc_session"
# Last seen is written at most this often: not a write per request.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
FIRST_LOCK = timedelta(minutes=1)
LONGEST_LOCK = timedelta(hours=1)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def hash_session_token(token: str) -> str:
    # 256 random bits: a fast hash is enough, there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def lock_for(failures: int, threshold: int) -> timedelta | None:
    """How long the account locks after its `failures`-th consecutive failure."""
    if failures < threshold:
        return None
    doublings = min(failures - threshold, 12)  # 2**12 minutes is past the cap already
    lock: timedelta = FIRST_LOCK * 2**doublings
    return min(lock, LONGEST_LOCK)


def sign_in_refused() -> ApiError:
    return ApiError(
        401,
        "sign_in_failed",
        "wrong e-mail address or password (after repeated failures an account is locked "
        "for a while: try again later)",
    )


def _host_of(url_or_host: str, *, is_url: bool) -> str:
    netloc = urlsplit(url_or_host).netloc if is_url else url_or_host
    netloc = netloc.rsplit("@", 1)[-1].lower()
    for default in (":80", ":443"):
        if netloc.endswith(default):
            return netloc[: -len(default)]
    return netloc


def same_site_request(request: Request) -> bool | None:
    """Whether the browser says this request comes from the desk's own pages: True or False
    from its Origin (else its Referer), None when it sends neither (a script, not a browser
    page: browsers send Origin on every cross-site unsafe request)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return None
    host = request.headers.get("host")
    if not host or source == "null":
        return False
    return _host_of(source, is_url=True) == _host_of(host, is_url=False)


def refuse_cross_site(request: Request, *, required: bool) -> None:
    """CSRF: an unsafe request riding on the session cookie must show it comes from the
    desk's own host (`required`: a missing Origin and Referer is refused too)."""
    if request.method in SAFE_METHODS:
        return
    same_site = same_site_request(request)
    if same_site is False or (same_site is None and required):
        raise ApiError(
            403,
            "cross_site_request",
            "a request signed in by cookie must come from the desk's own pages "
            "(Origin or Referer of this host); scripts use a bearer token",
        )


@dataclass(frozen=True)
class SignedIn:
    caller: Caller
    # The cookie's value: given to the browser once, only its hash is kept.
    token: str
    expires_at: datetime


class StaffSignIn:
    def __init__(self, engine: AsyncEngine, passwords: Passwords, settings: IntakeSettings) -> None:
        self._engine = engine
        self._passwords = passwords
        self._settings = settings

    async def sign_in(self, email: str, password: str) -> SignedIn:
        async with self._engine.connect() as conn:
            row = await staff_repository.find_by_email(conn, email.strip().lower())
        if row is None or not row.active:
            await self._passwords.verify(None, password)  # the same time as a wrong password
            raise sign_in_refused()
        if not await self.check_password(row, password):
            raise sign_in_refused()
        now = utc_now()
        token = secrets.token_urlsafe(32)
        session_id = uuid.uuid4()
        expires_at = now + timedelta(hours=self._settings.staff_session_hours)
        changes: dict[str, Any] = {}
        if self._passwords.needs_rehash(row.password_hash):
            # The desk raised argon2's cost: this is the one moment the password is at hand.
            changes["password_hash"] = await self._passwords.hash(password)
        async with self._engine.begin() as conn:
            if changes:
                await staff_repository.update_account(conn, row.id, **changes)
            await staff_repository.insert_session(
                conn,
                id=session_id,
                token_hash=hash_session_token(token),
                account_id=row.id,
                created_at=now,
                last_seen_at=now,
                expires_at=expires_at,
            )
        return SignedIn(caller=_caller(row, session_id), token=token, expires_at=expires_at)

    async def check_password(self, row: Row[Any], password: str) -> bool:
        """Whether `password` is the account's, under the lockout. The attempt is counted as a
        failure before the password is checked, in one statement, so parallel guesses each
        take a number and cannot all be checked against one stale count; the attempt that
        reaches the threshold locks the account before its check. A locked account is refused
        without looking; a success forgets the failures before it, unless later attempts
        locked the account meanwhile (then it is refused too)."""
        if row.password_hash is None:
            await self._passwords.verify(None, password)
            return False  # nothing to guess: no count, no lock
        now = utc_now()
        async with self._engine.begin() as conn:
            reserved = await staff_repository.reserve_attempt(conn, row.id, now)
            lock = (
                None
                if reserved is None
                else lock_for(reserved, self._settings.staff_lockout_failures)
            )
            if lock is not None:
                await staff_repository.lock_account(conn, row.id, now + lock)
        if reserved is None:
            await self._passwords.verify(None, password)  # the same time as a wrong password
            return False
        if not await self._passwords.verify(row.password_hash, password):
            return False  # counted and, if due, locked already
        async with self._engine.begin() as conn:
            return await staff_repository.clear_attempts(conn, row.id, reserved, utc_now())

    async def sign_out(self, caller: Caller) -> None:
        session_id = self.session_id_of(caller)
        if session_id is not None:
            async with self._engine.begin() as conn:
                await staff_repository.delete_session(conn, session_id)

    @staticmethod
    def session_id_of(caller: Caller) -> uuid.UUID | None:
        """The staff session a caller signed in with (None for a token or a requester)."""
        if not caller.is_staff or caller.credential_id is None:
            return None
        try:
            return uuid.UUID(caller.credential_id)
        except ValueError:
            return None


def _caller(row: Row[Any], session_id: uuid.UUID) -> Caller:
    return Caller(
        role=row.role,
        subject_id=row.id,
        name=row.name,
        email=row.email,
        groups=frozenset(row.groups),
        credential_id=str(session_id),
    )


async def caller_from_staff_session(request: Request, engine: AsyncEngine) -> Caller | None:
    """The staff member whose session cookie this request carries, if it is valid.

    Raises a 403 for an unsafe method whose Origin (or Referer) is not the desk's host, or
    that has neither: a cookie is sent by the browser whoever made the page (CSRF)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 100:
        return None
    settings: IntakeSettings = request.app.state.container.settings
    async with engine.connect() as conn:
        row = await staff_repository.find_session(conn, hash_session_token(token))
    if row is None or not row.active:
        return None
    now = utc_now()
    idle_end = row.last_seen_at + timedelta(minutes=settings.staff_session_idle_minutes)
    if row.expires_at <= now or idle_end <= now:
        return None
    refuse_cross_site(request, required=True)
    if now - row.last_seen_at >= LAST_SEEN_RESOLUTION:
        async with engine.begin() as conn:
            await staff_repository.touch_session(conn, row.session_id, now)
    return _caller(row, row.session_id)
