"""Requesters' one-time sign-in links and the sessions they open (all their own tickets).

A requester known to the desk (their address has a ticket) asks for a link; intake stores the
hash of a one-time token and, in the same transaction, publishes it sealed to notify, which
mails the link. Following it once opens a session: a cookie holding a random secret, of which
intake keeps only the hash, ending after a while unused and at an absolute limit."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_contracts import RequesterSignInRequested
from spoc_intake import credentials_repository as repository
from spoc_intake.callers import Caller
from spoc_intake.settings import IntakeSettings
from spoc_intake.staff_sign_in import refuse_cross_site
from spoc_platform.db import utc_now
from spoc_platform.sealing import seal_for
from spoc_platform.unit_of_work import UnitOfWorkFactory

REQUESTER_SESSION_COOKIE = "spoc_requester"
# A session's last use is refreshed at most this often: idle expiry needs no finer grain.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
# Longer than anything `new_secret` makes: refused without a lookup.
MAX_SECRET_LENGTH = 64


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    # 256 random bits: a fast hash is enough, there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class OpenedSession:
    id: uuid.UUID
    email: str
    # The cookie's value: given to the browser once, kept by intake only as its hash.
    secret: str
    expires_at: datetime


class RequesterSignIn:
    """Requesters' use cases: ask for a link, follow it, sign out."""

    def __init__(self, unit_of_work: UnitOfWorkFactory, settings: IntakeSettings) -> None:
        self._unit_of_work = unit_of_work
        self._settings = settings

    async def request_link(self, email: str) -> bool:
        """Mails a link if the address is known; True if it was. The caller must answer the
        same either way: whether an address has tickets here is nobody else's business."""
        now = utc_now()
        expires_at = now + timedelta(minutes=self._settings.requester_link_minutes)
        async with self._unit_of_work() as uow:
            latest = await repository.latest_ticket_of(uow.conn, email)
            if latest is None:
                return False
            token = new_secret()
            await repository.insert_link(
                uow.conn,
                token_hash=digest(token),
                email=email,
                created_at=now,
                expires_at=expires_at,
                used_at=None,
            )
            await uow.publish(
                RequesterSignInRequested(
                    email=email,
                    locale=latest.requester_locale,
                    # Sealed to notify, the only service that needs it (for the link it mails).
                    link_token_sealed=seal_for(self._settings.access_key_recipient, token),
                    expires_at=expires_at,
                ),
                ticket_id=None,
            )
        return True

    async def sign_in(self, token: str | None) -> OpenedSession | None:
        """Uses the link's token (once) and opens a session; None if the link is unknown,
        used or expired."""
        if not token or len(token) > MAX_SECRET_LENGTH:
            return None
        now = utc_now()
        secret = new_secret()
        settings = self._settings
        opened: OpenedSession | None = None
        async with self._unit_of_work.engine.begin() as conn:
            email = await repository.use_link(conn, digest(token), now)
            if email is None:
                return None
            # Only the address's mail had the link: from now on the desk knows the address.
            await repository.vouch_for_address(conn, email)
            opened = OpenedSession(
                id=uuid.uuid4(),
                email=email,
                secret=secret,
                expires_at=now + timedelta(hours=settings.requester_session_hours),
            )
            await repository.insert_session(
                conn,
                id=opened.id,
                secret_hash=digest(secret),
                email=email,
                created_at=now,
                last_seen_at=now,
                idle_seconds=settings.requester_session_idle_minutes * 60,
                expires_at=opened.expires_at,
            )
        return opened

    async def sign_out(self, secret: str | None) -> None:
        if not secret or len(secret) > MAX_SECRET_LENGTH:
            return
        async with self._unit_of_work.engine.begin() as conn:
            await repository.delete_session(conn, digest(secret))

    async def forget_expired(self) -> None:
        """Housekeeping: links and sessions past their absolute end sign nobody in."""
        async with self._unit_of_work.engine.begin() as conn:
            now = utc_now()
            await repository.prune_links(conn, now)
            await repository.prune_sessions(conn, now)


async def caller_from_requester_session(request: Request, engine: AsyncEngine) -> Caller | None:
    """The requester whose sign-in session cookie this request carries, if it is valid."""
    secret = request.cookies.get(REQUESTER_SESSION_COOKIE)
    if not secret or len(secret) > MAX_SECRET_LENGTH:
        return None
    now = utc_now()
    async with engine.connect() as conn:
        row = await repository.session_by_hash(conn, digest(secret))
    if row is None or row.expires_at <= now:
        return None
    if row.last_seen_at + timedelta(seconds=row.idle_seconds) <= now:
        return None
    # CSRF: the browser sends the cookie whoever made the page; an unsafe request must come
    # from the desk's own pages, as for staff sessions.
    refuse_cross_site(request, required=True)
    if row.last_seen_at < now - LAST_SEEN_RESOLUTION:
        async with engine.begin() as conn:
            await repository.note_session_use(
                conn, row.id, now=now, unless_since=now - LAST_SEEN_RESOLUTION
            )
    # An ended session is an absent credential, not an error: the requester is anonymous and
    # may still open a ticket with its access key (the web page offers a new link).
    return Caller(
        role="requester", subject_id=row.email, email=row.email, credential_id=str(row.id)
    )
