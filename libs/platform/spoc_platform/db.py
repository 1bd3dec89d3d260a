"""Engines, metadata and column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeAlias

from sqlalchemy import BigInteger, DateTime, Dialect, Integer, MetaData, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.types import TypeDecorator

from spoc_platform import sqlite_inline

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants a 64-bit identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


def utc_now() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UtcDateTime column")
        value = value.astimezone(UTC)
        # SQLite keeps text; without the offset, text order is time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(
    url: str, *, pool_size: int = 10, pool_timeout: float = 10.0, echo: bool = False
) -> AsyncEngine:
    if is_sqlite(url):
        # SQLite takes one writer at a time; one connection per process serialises work in
        # Python instead of failing with "database is locked" under load.
        database = make_url(url).database or ":memory:"
        engine = create_async_engine(
            url,
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
            echo=echo,
            # Statements run on the loop's thread: see spoc_platform.sqlite_inline for why.
            async_creator=lambda: sqlite_inline.connect(database),
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
        # No pre-ping: on asyncpg it is BEGIN, a query and ROLLBACK before every transaction,
        # three round trips that cost more PostgreSQL CPU than the work itself (measured).
        # A connection that died with its server fails once; SQLAlchemy then drops the whole
        # pool, and the failed work is retried (consumers) or answered 503 (HTTP).
        pool_recycle=1800,
        echo=echo,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        # Never wait inside SQLite: the statement runs on the event loop's thread, and
        # sqlite_inline waits for another process's lock with asyncio instead.
        "busy_timeout=0",
        "foreign_keys=ON",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


# Both dialects' INSERTs carry ON CONFLICT (on_conflict_do_update/_nothing, excluded).
DialectInsert: TypeAlias = postgresql.Insert | sqlite.Insert


def insert_for(dialect_name: str, table: Table) -> DialectInsert:
    """An INSERT that knows ON CONFLICT for the dialect at hand (both dialects spell it alike)."""
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    if dialect_name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"Spoc runs on SQLite and PostgreSQL, not {dialect_name}")


def is_outage(error: BaseException) -> bool:
    """Whether an error says "the database is not reachable right now" (it will pass) rather
    than "this work is wrong" (it will not)."""
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or isinstance(error, OperationalError | InterfaceError)
    return isinstance(error, OSError | PoolTimeoutError | ConnectionError)
