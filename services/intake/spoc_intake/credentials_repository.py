"""The only place intake queries bearer tokens, requesters' sign-in links and their sessions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, delete, false, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from spoc_intake.models import ApiToken, RequesterLink, RequesterSession, StaffAccount, Ticket
from spoc_intake.schemas import email_key

# Declarative models type __table__ as FromClause; these are plain Tables.
token: Table = cast(Table, ApiToken.__table__)
link: Table = cast(Table, RequesterLink.__table__)
session: Table = cast(Table, RequesterSession.__table__)
ticket: Table = cast(Table, Ticket.__table__)
account: Table = cast(Table, StaffAccount.__table__)


# Bearer tokens


async def insert_token(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(insert(token), values)


async def all_tokens(conn: AsyncConnection) -> Sequence[Row[Any]]:
    columns = [c for c in token.c if c.name != "token_hash"]
    return (await conn.execute(select(*columns).order_by(token.c.created_at, token.c.id))).all()


async def revoke_token(conn: AsyncConnection, token_id: uuid.UUID, now: datetime) -> bool:
    """Revokes the token (a second revocation keeps the first time); False if there is none."""
    result = await conn.execute(
        update(token)
        .where(token.c.id == token_id, token.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    if result.rowcount == 1:
        return True
    found = await conn.execute(select(token.c.id).where(token.c.id == token_id))
    return found.first() is not None


async def token_by_id(conn: AsyncConnection, token_id: uuid.UUID) -> Row[Any] | None:
    return (await conn.execute(select(token).where(token.c.id == token_id))).first()


async def live_tokens(conn: AsyncConnection, now: datetime) -> Sequence[Row[Any]]:
    """Tokens neither revoked nor expired at `now`: what intake re-announces as issued."""
    query = select(token).where(
        token.c.revoked_at.is_(None), or_(token.c.expires_at.is_(None), token.c.expires_at > now)
    )
    return (await conn.execute(query.order_by(token.c.created_at, token.c.id))).all()


async def live_token_ids(conn: AsyncConnection, now: datetime) -> list[uuid.UUID]:
    """The ids of the tokens `live_tokens` would return: what each credential.heartbeat counts
    and digests."""
    query = select(token.c.id).where(
        token.c.revoked_at.is_(None), or_(token.c.expires_at.is_(None), token.c.expires_at > now)
    )
    return list((await conn.execute(query)).scalars().all())


async def revoked_unexpired_tokens(conn: AsyncConnection, now: datetime) -> Sequence[Row[Any]]:
    """Revoked tokens that would still be live at `now` but for it: what intake re-announces as
    revoked (an expired one needs no revocation to stop working)."""
    query = select(token).where(
        token.c.revoked_at.is_not(None),
        or_(token.c.expires_at.is_(None), token.c.expires_at > now),
    )
    return (await conn.execute(query.order_by(token.c.revoked_at, token.c.id))).all()


async def token_by_hash(conn: AsyncConnection, token_hash: str) -> Row[Any] | None:
    """The token with this digest, with the staff account it acts as (account_* columns, None
    when it names none or the account is gone)."""
    query = (
        select(
            token,
            account.c.id.label("account_id"),
            account.c.name.label("account_name"),
            account.c.email.label("account_email"),
            account.c.role.label("account_role"),
            account.c.groups.label("account_groups"),
            account.c.active.label("account_active"),
        )
        .outerjoin(account, token.c.subject_id == account.c.id)
        .where(token.c.token_hash == token_hash)
    )
    return (await conn.execute(query)).first()


async def staff_account_exists(conn: AsyncConnection, account_id: str) -> bool:
    query = select(account.c.id).where(account.c.id == account_id)
    return (await conn.execute(query)).first() is not None


async def live_token_ids_of(conn: AsyncConnection, account_id: str) -> list[uuid.UUID]:
    """The unrevoked tokens acting as this staff account (expired ones too: revoking costs
    nothing and tells routing and sla again)."""
    query = select(token.c.id).where(token.c.subject_id == account_id, token.c.revoked_at.is_(None))
    return list((await conn.execute(query)).scalars().all())


async def note_token_use(
    conn: AsyncConnection, token_id: uuid.UUID, *, now: datetime, unless_since: datetime
) -> None:
    """Records a use unless one was recorded since `unless_since`: replicas racing to write
    it write it once."""
    await conn.execute(
        update(token)
        .where(
            token.c.id == token_id,
            or_(token.c.last_used_at.is_(None), token.c.last_used_at < unless_since),
        )
        .values(last_used_at=now)
    )


# Requesters' sign-in links


async def latest_ticket_of(conn: AsyncConnection, email: str) -> Row[Any] | None:
    """The address's latest ticket (its locale), or None if the desk has never heard of it."""
    query = (
        select(ticket.c.requester_locale)
        .where(ticket.c.requester_email_key == email_key(email))
        .order_by(ticket.c.created_at.desc())
        .limit(1)
    )
    return (await conn.execute(query)).first()


async def vouch_for_address(conn: AsyncConnection, email: str) -> None:
    """The address proved it reads its mail (it used a link sent only there): its latest
    ticket records the vouched contact that makes its next tickets `requester_known`."""
    latest = (
        select(ticket.c.id)
        .where(ticket.c.requester_email_key == email_key(email))
        .order_by(ticket.c.created_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    await conn.execute(
        update(ticket)
        .where(ticket.c.id == latest, ticket.c.requester_vouched == false())
        .values(requester_vouched=True)
    )


async def insert_link(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(insert(link), values)


async def use_link(conn: AsyncConnection, token_hash: str, now: datetime) -> str | None:
    """Marks a live, unused link used and returns its address; None if there is none. One
    statement, so two clicks at once cannot both use it."""
    result = await conn.execute(
        update(link)
        .where(link.c.token_hash == token_hash, link.c.used_at.is_(None), link.c.expires_at > now)
        .values(used_at=now)
        .returning(link.c.email)
    )
    email: str | None = result.scalar_one_or_none()
    return email


async def prune_links(conn: AsyncConnection, before: datetime) -> None:
    await conn.execute(delete(link).where(link.c.expires_at < before))


# Requesters' sessions


async def insert_session(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(insert(session), values)


async def session_by_hash(conn: AsyncConnection, secret_hash: str) -> Row[Any] | None:
    return (await conn.execute(select(session).where(session.c.secret_hash == secret_hash))).first()


async def note_session_use(
    conn: AsyncConnection, session_id: uuid.UUID, *, now: datetime, unless_since: datetime
) -> None:
    await conn.execute(
        update(session)
        .where(session.c.id == session_id, session.c.last_seen_at < unless_since)
        .values(last_seen_at=now)
    )


async def delete_session(conn: AsyncConnection, secret_hash: str) -> None:
    await conn.execute(delete(session).where(session.c.secret_hash == secret_hash))


async def prune_sessions(conn: AsyncConnection, before: datetime) -> None:
    await conn.execute(delete(session).where(session.c.expires_at < before))
