"""The only place that builds queries on staff accounts and their sign-in sessions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, case, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from spoc_intake.models import StaffAccount, StaffSession
from spoc_platform.db import insert_for

account: Table = cast(Table, StaffAccount.__table__)
session: Table = cast(Table, StaffSession.__table__)


async def get_account(conn: AsyncConnection, account_id: str) -> Row[Any] | None:
    return (await conn.execute(select(account).where(account.c.id == account_id))).first()


async def find_by_email(conn: AsyncConnection, email_key: str) -> Row[Any] | None:
    query = select(account).where(account.c.email_key == email_key)
    return (await conn.execute(query)).first()


async def list_accounts(conn: AsyncConnection) -> list[Row[Any]]:
    return list((await conn.execute(select(account).order_by(account.c.id))).all())


async def insert_account(conn: AsyncConnection, **values: Any) -> bool:
    """False if an account with this id already exists (nothing changes then); a taken
    address raises IntegrityError."""
    stmt = (
        insert_for(conn.dialect.name, account)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[account.c.id])
        .returning(account.c.id)
    )
    return (await conn.execute(stmt)).first() is not None


async def update_account(conn: AsyncConnection, account_id: str, **values: Any) -> None:
    await conn.execute(update(account).where(account.c.id == account_id).values(**values))


async def change_availability(
    conn: AsyncConnection, account_id: str, availability: str, now: datetime
) -> bool:
    """Sets the account's availability unless it has it already, in one statement: False then
    (or when there is no such account), so two requests for the same value publish one change."""
    stmt = (
        update(account)
        .where(account.c.id == account_id, account.c.availability != availability)
        .values(availability=availability, updated_at=now)
        .returning(account.c.id)
    )
    return (await conn.execute(stmt)).first() is not None


async def lock_active_admins(conn: AsyncConnection) -> list[str]:
    """The active admins' ids, their rows locked until the transaction ends (PostgreSQL; on
    SQLite the one writer serialises): two demotions at once cannot each count the other."""
    query = (
        select(account.c.id)
        .where(account.c.role == "admin", account.c.active.is_(True))
        .order_by(account.c.id)  # one locking order: concurrent callers wait, never deadlock
        .with_for_update()
    )
    return list((await conn.execute(query)).scalars().all())


async def reserve_attempt(conn: AsyncConnection, account_id: str, now: datetime) -> int | None:
    """Counts a sign-in attempt as a failure before its password is checked, in one statement
    (concurrent attempts each get their own number); None while the account is locked."""
    stmt = (
        update(account)
        .where(
            account.c.id == account_id,
            or_(account.c.locked_until.is_(None), account.c.locked_until <= now),
        )
        .values(failed_attempts=account.c.failed_attempts + 1)
        .returning(account.c.failed_attempts)
    )
    count = (await conn.execute(stmt)).scalar_one_or_none()
    return None if count is None else int(count)


async def lock_account(conn: AsyncConnection, account_id: str, until: datetime) -> None:
    await conn.execute(update(account).where(account.c.id == account_id).values(locked_until=until))


async def clear_attempts(
    conn: AsyncConnection, account_id: str, reserved: int, now: datetime
) -> bool:
    """After the right password: forgets the failures counted up to this attempt (the
    `reserved`-th), unless the account was locked meanwhile by attempts after it; False then.
    A lock this attempt set itself is recognised by no attempt having been counted since."""
    stmt = (
        update(account)
        .where(
            account.c.id == account_id,
            or_(
                account.c.locked_until.is_(None),
                account.c.locked_until <= now,
                account.c.failed_attempts == reserved,
            ),
        )
        .values(
            failed_attempts=case(
                (account.c.failed_attempts > reserved, account.c.failed_attempts - reserved),
                else_=0,
            ),
            locked_until=None,
        )
        .returning(account.c.id)
    )
    return (await conn.execute(stmt)).first() is not None


async def insert_session(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(session.insert().values(**values))


async def find_session(conn: AsyncConnection, token_hash: str) -> Any:
    """The session with this cookie digest, joined with its account's current state (a Row,
    or None)."""
    query = select(
        session.c.id.label("session_id"),
        session.c.last_seen_at,
        session.c.expires_at,
        account.c.id,
        account.c.name,
        account.c.email,
        account.c.role,
        account.c.groups,
        account.c.active,
    ).join_from(session, account, session.c.account_id == account.c.id)
    return (await conn.execute(query.where(session.c.token_hash == token_hash))).first()


async def touch_session(conn: AsyncConnection, session_id: uuid.UUID, now: datetime) -> None:
    stmt = update(session).where(session.c.id == session_id).values(last_seen_at=now)
    await conn.execute(stmt)


async def delete_session(conn: AsyncConnection, session_id: uuid.UUID) -> None:
    await conn.execute(delete(session).where(session.c.id == session_id))


async def delete_sessions_of(
    conn: AsyncConnection, account_id: str, *, keep: uuid.UUID | None = None
) -> None:
    stmt = delete(session).where(session.c.account_id == account_id)
    if keep is not None:
        stmt = stmt.where(session.c.id != keep)
    await conn.execute(stmt)


async def prune_sessions(conn: AsyncConnection, now: datetime, idle_since: datetime) -> None:
    """Forgets sessions past their absolute end or unused since `idle_since`."""
    await conn.execute(
        delete(session).where(or_(session.c.expires_at < now, session.c.last_seen_at < idle_since))
    )
