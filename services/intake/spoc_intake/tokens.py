"""Bearer tokens for scripts and integrations: created and shown once, stored hashed.

A token is `spoc_` and 256 random bits (the prefix lets secret scanners spot a leaked one);
only its SHA-256 is kept, so a lookup by hash is the whole check and a copy of the table
authenticates nobody. Revoked or expired tokens stop working on the next request.

Routing and sla honour the same tokens without asking intake (spoc_platform.token_projection):
each issue and revocation is published as an event in the same transaction as the change
(credential.token_issued / token_revoked), and `TokenFeedHeartbeat` publishes
credential.heartbeat every 20 s, without which they honour no token after a minute. The
heartbeat carries the count and digest of the live tokens' ids: a consumer whose own differ for
long honours no token, since it cannot tell which it has wrong. So every live token, and every
unexpired revocation, is announced again when intake starts and every `REANNOUNCE_EVERY` beats:
a new consumer's empty table fills, and one that lost an event (a dead letter, a database
restored or replaced) catches up, with no call to intake."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import Request
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_contracts import CredentialFeedHeartbeat, TokenIssued, TokenRevoked, live_token_digest
from spoc_intake import credentials_repository as repository
from spoc_intake.callers import STAFF_ROLES, Caller, Role
from spoc_platform.db import is_outage, utc_now
from spoc_platform.unit_of_work import UnitOfWork, UnitOfWorkFactory
from spoc_platform.web import ApiError

TOKEN_PREFIX = "spoc_"
# What `new_token` makes: anything else is refused before the database is asked.
_TOKEN_SHAPE = re.compile(r"spoc_[A-Za-z0-9_-]{43}")
# Roles a token may carry; requesters sign in by mailed link, never by token.
TOKEN_ROLES: tuple[Role, ...] = ("integration", "agent", "manager", "admin")
# A staff token acts with the lower of its own role and its account's.
_RANK: dict[str, int] = {"agent": 0, "manager": 1, "admin": 2}
# Last use is a trace for operators, not an audit log: one write a minute per token at most.
LAST_USE_RESOLUTION = timedelta(minutes=1)
# Well within the minute after which routing and sla stop trusting their copy of the tokens
# (spoc_platform.token_projection.MAX_STALENESS): two beats may be lost before it bites.
HEARTBEAT_INTERVAL = timedelta(seconds=20)
# Every 6th beat (two minutes) announces every token again: the longest a consumer that lost an
# event refuses every token, past its grace. Tokens are few (hundreds at most), so a few hundred
# small events every two minutes; checking whether anyone needs them would need a way back.
REANNOUNCE_EVERY = 6

log = logging.getLogger(__name__)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # 256 random bits: a fast hash is enough, there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    id: uuid.UUID
    # The secret itself: shown once to whoever created it, never stored.
    token: str
    name: str
    role: Role
    subject_id: str | None
    expires_at: datetime | None


async def create_token(
    unit_of_work: UnitOfWorkFactory,
    *,
    role: Role,
    name: str,
    subject_id: str | None = None,
    expires_at: datetime | None = None,
) -> IssuedToken:
    if role not in TOKEN_ROLES:
        raise ValueError(f"a token's role is one of {', '.join(TOKEN_ROLES)}, not {role!r}")
    if role == "integration" and subject_id is not None:
        raise ValueError("an integration token acts as itself: it names no staff account")
    if not name.strip() or len(name) > 100:
        raise ValueError("a token's name is 1 to 100 characters")
    now = utc_now()
    if expires_at is not None and expires_at <= now:
        raise ValueError("the expiry is in the past")
    issued = IssuedToken(
        id=uuid.uuid4(),
        token=new_token(),
        name=name.strip(),
        role=role,
        subject_id=subject_id,
        expires_at=expires_at,
    )
    async with unit_of_work() as uow:
        if subject_id is not None and not await repository.staff_account_exists(
            uow.conn, subject_id
        ):
            raise ValueError(f"there is no staff account {subject_id!r} for the token to act as")
        await repository.insert_token(
            uow.conn,
            id=issued.id,
            token_hash=hash_token(issued.token),
            name=issued.name,
            role=role,
            subject_id=subject_id,
            created_at=now,
            expires_at=expires_at,
            last_used_at=None,
            revoked_at=None,
        )
        row = await repository.token_by_id(uow.conn, issued.id)
        assert row is not None  # inserted just above, in this transaction
        await _announce_issued(uow, row)
    return issued


async def _announce_issued(uow: UnitOfWork, row: Row[Any]) -> None:
    await uow.publish(
        TokenIssued(
            token_id=row.id,
            token_hash=row.token_hash,
            role=row.role,
            subject_id=row.subject_id,
            expires_at=row.expires_at,
            issued_at=row.created_at,
        ),
        ticket_id=None,
    )


async def list_tokens(engine: AsyncEngine) -> Sequence[Row[Any]]:
    """Every token's description (never its hash), oldest first."""
    async with engine.connect() as conn:
        return await repository.all_tokens(conn)


async def revoke_token(unit_of_work: UnitOfWorkFactory, token_id: uuid.UUID) -> bool:
    """False if there is no such token; revoking a revoked one again is no error (and tells
    routing and sla again, in case they missed it)."""
    async with unit_of_work() as uow:
        return await _revoke(uow, token_id)


async def revoke_tokens_of(uow: UnitOfWork, account_id: str) -> None:
    """Revokes every live token acting as the staff account, within the caller's unit of work
    (its deactivation or demotion), each revocation published."""
    for token_id in await repository.live_token_ids_of(uow.conn, account_id):
        await _revoke(uow, token_id)


async def _revoke(uow: UnitOfWork, token_id: uuid.UUID) -> bool:
    if not await repository.revoke_token(uow.conn, token_id, utc_now()):
        return False
    row = await repository.token_by_id(uow.conn, token_id)
    assert row is not None and row.revoked_at is not None  # revoked just above
    await _announce_revoked(uow, row)
    return True


async def _announce_revoked(uow: UnitOfWork, row: Row[Any]) -> None:
    await uow.publish(
        TokenRevoked(token_id=row.id, token_hash=row.token_hash, revoked_at=row.revoked_at),
        ticket_id=None,
    )


async def _announce_every_token(uow: UnitOfWork, now: datetime) -> None:
    """Every live token's token_issued and every unexpired revocation's token_revoked again: a
    consumer that never heard them (new, its table lost, an event dead-lettered) catches up
    with no call to intake. Repeats are harmless, and a revocation already recorded is never
    undone by them. An expired token is left out: it works nowhere, revoked or not."""
    for row in await repository.live_tokens(uow.conn, now):
        await _announce_issued(uow, row)
    for row in await repository.revoked_unexpired_tokens(uow.conn, now):
        await _announce_revoked(uow, row)


async def announce_live_tokens(unit_of_work: UnitOfWorkFactory) -> None:
    """Every token announced again at intake's start (`_announce_every_token`)."""
    try:
        async with unit_of_work() as uow:
            await _announce_every_token(uow, utc_now())
    except Exception as error:
        if not is_outage(error):
            raise
        # Not a reason to keep intake from starting: the next start announces them.
        log.warning("live tokens not announced, the database is unreachable: %r", error)


class TokenFeedHeartbeat:
    """Publishes credential.heartbeat every `interval`: the proof routing and sla need that
    no revocation is held up on the way, and which tokens they should hold; every
    `reannounce_every` beats, every token again first. Beats that wait in the outbox are pruned
    with the rest of it once published (the relay's retention), so they never pile up for
    good."""

    def __init__(
        self,
        unit_of_work: UnitOfWorkFactory,
        interval: timedelta = HEARTBEAT_INTERVAL,
        reannounce_every: int = REANNOUNCE_EVERY,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._interval = interval.total_seconds()
        self._reannounce_every = reannounce_every
        self._beats = 0
        self._stopped = asyncio.Event()

    async def beat(self) -> None:
        self._beats += 1
        async with self._unit_of_work() as uow:
            now = utc_now()
            # Intake's start announced them already: the first re-announcement is a period on.
            if self._beats % self._reannounce_every == 0:
                await _announce_every_token(uow, now)
            # Taken at the beat's own moment: a consumer holding another set live than this for
            # long has lost an event (spoc_platform.token_projection.REVOCATION_GRACE).
            live = await repository.live_token_ids(uow.conn, now)
            await uow.publish(
                CredentialFeedHeartbeat(
                    at=now, live_tokens=len(live), live_digest=live_token_digest(live)
                ),
                ticket_id=None,
            )

    async def run(self) -> None:
        while not self._stopped.is_set():
            try:
                await self.beat()
            except Exception:  # the database may be down: the next beat tries again
                log.exception("token feed heartbeat not written")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self._interval)

    async def stop(self) -> None:
        self._stopped.set()


def _invalid_token() -> ApiError:
    # One answer for malformed, unknown, revoked and expired: a guesser learns nothing.
    return ApiError(
        401,
        "unauthenticated",
        "the bearer token is not valid (unknown, revoked or expired)",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def _bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer …` header; None without the header. Any other
    Authorization is refused rather than ignored: a caller who meant to authenticate must
    not be served as anonymous."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    token = value.strip()
    if scheme.lower() != "bearer" or not _TOKEN_SHAPE.fullmatch(token):
        raise _invalid_token()
    return token


async def caller_from_bearer_token(request: Request, engine: AsyncEngine) -> Caller | None:
    """The holder of the `Authorization: Bearer …` token, if it is live."""
    token = _bearer_token(request)
    if token is None:
        return None
    holder = await token_holder(engine, token)
    if holder is None:
        raise _invalid_token()
    return holder


@dataclass(frozen=True)
class TokenHolders:
    """Intake's own answer to "who holds this token, now", as the admin API of every service
    asks it (spoc_platform.admin): routing and sla ask their projection of intake's tokens."""

    engine: AsyncEngine

    async def caller(self, token: str) -> Caller | None:
        if not _TOKEN_SHAPE.fullmatch(token):
            return None
        return await token_holder(self.engine, token)


async def token_holder(engine: AsyncEngine, token: str) -> Caller | None:
    """The holder of a live token; None when it is unknown, revoked, expired or void."""
    now = utc_now()
    async with engine.connect() as conn:
        row = await repository.token_by_hash(conn, hash_token(token))
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    if row.last_used_at is None or row.last_used_at < now - LAST_USE_RESOLUTION:
        async with engine.begin() as conn:
            await repository.note_token_use(
                conn, row.id, now=now, unless_since=now - LAST_USE_RESOLUTION
            )
    if row.role == "integration":
        return Caller(
            role=row.role, subject_id=str(row.id), name=row.name, credential_id=str(row.id)
        )
    if row.role in STAFF_ROLES and row.subject_id is not None:
        # A staff token acts as its account as the account is now: gone or inactive, the
        # token is void; its groups, name and address are the account's; its role the lower.
        if row.account_id is None or not row.account_active:
            return None
        role = min(row.role, row.account_role, key=lambda r: _RANK[r])
        return Caller(
            role=role,
            subject_id=row.subject_id,
            name=row.account_name,
            email=row.account_email,
            groups=frozenset(row.account_groups),
            credential_id=str(row.id),
        )
    return Caller(
        role=row.role, subject_id=row.subject_id, name=row.name, credential_id=str(row.id)
    )
