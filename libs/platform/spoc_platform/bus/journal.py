"""The in-memory bus's durable side: what its queues hold, and its dead letters, in one SQLite file.

A broker keeps a message until a consumer acknowledges it, and a dead letter until an operator
deals with it; an in-process bus that forgets both on exit loses work at every stop. The journal
gives the memory bus the broker's memory. Writes are queued and committed together on the next
turn of the event loop: a publish waits for that commit (it is the broker's confirm), so one
outbox batch of 64 publishes costs one commit. Acknowledgements and redelivery counts are written
lazily, within ACK_DELAY: a crash then re-delivers a few handled messages, which the consumers'
inboxes drop (delivery is at-least-once anyway).

Plain sqlite3 on the loop's thread (see spoc_platform.sqlite_inline for why), WAL with
synchronous=NORMAL: a commit survives the process being killed, not necessarily a power cut.
The file is the process's own (`spoc up` locks its data directory), so no write ever waits
for a lock."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spoc_platform.bus.port import DeadLetter, Delivery

log = logging.getLogger(__name__)

# How long an acknowledgement may wait to be written with others.
ACK_DELAY = 0.05

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS held (
        seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, message_id TEXT,
        routing_key TEXT NOT NULL, body BLOB NOT NULL, delivery_count INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS dead (
        seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, message_id TEXT,
        routing_key TEXT NOT NULL, body BLOB NOT NULL, reason TEXT NOT NULL,
        attempts INTEGER NOT NULL, dead_at TEXT NOT NULL)""",
)


class JournalError(Exception):
    """The journal could not write: the message is not safe, so the publish is not confirmed."""


@dataclass(frozen=True, slots=True)
class HeldMessage:
    seq: int
    queue: str
    delivery: Delivery


@dataclass(frozen=True, slots=True)
class JournalledDeadLetter:
    seq: int
    queue: str
    letter: DeadLetter


@dataclass(frozen=True)
class JournalContents:
    """What the bus held when it last stopped, oldest first."""

    held: list[HeldMessage]
    dead: list[JournalledDeadLetter]


class BusJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        # Whether this journal started empty where none was before (a new data directory, or
        # one from a release without a journal): see spoc.embedded for what that means.
        self.created = not path.exists()
        self._connection: sqlite3.Connection | None = None
        self._next_seq = 1
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._flush_soon: asyncio.Handle | None = None
        self._flush_later: asyncio.TimerHandle | None = None

    def open(self) -> JournalContents:
        """Opens the file (creating it) and returns what it holds."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL"):
            connection.execute(f"PRAGMA {pragma}")
        for statement in _SCHEMA:
            connection.execute(statement)
        self._connection = connection
        held = [
            HeldMessage(seq, queue, Delivery(message_id, routing_key, bytes(body), count))
            for seq, queue, message_id, routing_key, body, count in connection.execute(
                "SELECT seq, queue, message_id, routing_key, body, delivery_count"
                " FROM held ORDER BY seq"
            )
        ]
        dead = [
            JournalledDeadLetter(
                seq,
                queue,
                DeadLetter(
                    message_id,
                    routing_key,
                    bytes(body),
                    reason,
                    attempts,
                    datetime.fromisoformat(dead_at),
                ),
            )
            for seq, queue, message_id, routing_key, body, reason, attempts, dead_at in (
                connection.execute(
                    "SELECT seq, queue, message_id, routing_key, body, reason, attempts, dead_at"
                    " FROM dead ORDER BY seq"
                )
            )
        ]
        last = max([0] + [m.seq for m in held] + [d.seq for d in dead])
        self._next_seq = last + 1
        return JournalContents(held, dead)

    # Writes, queued; `confirm()` waits until everything queued so far is committed.
    def hold(self, queue: str, delivery: Delivery) -> int:
        seq = self._take_seq()
        self._queue(
            "INSERT INTO held VALUES (?, ?, ?, ?, ?, ?)",
            (
                seq,
                queue,
                delivery.message_id,
                delivery.routing_key,
                delivery.body,
                delivery.delivery_count,
            ),
        )
        return seq

    def release(self, seq: int) -> None:
        self._queue("DELETE FROM held WHERE seq = ?", (seq,), lazy=True)

    def count_delivery(self, seq: int, delivery_count: int) -> None:
        self._queue(
            "UPDATE held SET delivery_count = ? WHERE seq = ?", (delivery_count, seq), lazy=True
        )

    def bury(self, seq: int, queue: str, letter: DeadLetter) -> int:
        """Moves a held message to the dead letters (in one transaction); returns its new seq."""
        dead_seq = self._take_seq()
        self._queue("DELETE FROM held WHERE seq = ?", (seq,), lazy=True)
        self._queue(
            "INSERT INTO dead VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                dead_seq,
                queue,
                letter.message_id,
                letter.routing_key,
                letter.body,
                letter.reason,
                letter.attempts,
                (letter.dead_at or datetime.now(UTC)).isoformat(),
            ),
            lazy=True,
        )
        return dead_seq

    def revive(self, dead_seq: int, queue: str, delivery: Delivery) -> int:
        """Moves a dead letter back to its queue; returns its seq there."""
        self._queue("DELETE FROM dead WHERE seq = ?", (dead_seq,))
        return self.hold(queue, delivery)

    def forget(self, dead_seqs: Iterable[int]) -> None:
        for seq in dead_seqs:
            self._queue("DELETE FROM dead WHERE seq = ?", (seq,))

    async def confirm(self) -> None:
        if not self._pending:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._flush_soon is None:
            self._flush_soon = asyncio.get_running_loop().call_soon(self.flush)
        await asyncio.shield(waiter)

    def flush(self) -> None:
        """Commits everything queued, now."""
        self._flush_soon = None
        if self._flush_later is not None:
            self._flush_later.cancel()
            self._flush_later = None
        pending, self._pending = self._pending, []
        waiters, self._waiters = self._waiters, []
        error: BaseException | None = None
        if pending and self._connection is None:
            # Late acknowledgements after a stop: their messages come again at the next start.
            error = JournalError("bus journal is closed")
        elif pending:
            try:
                self._commit(pending)
            except sqlite3.Error as failed:
                # Lost writes are acknowledgements and counts (the message comes again after
                # a restart) or unconfirmed publishes (the outbox sends them again).
                log.exception("bus journal: %d writes failed", len(pending))
                error = failed
        for waiter in waiters:
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(JournalError(str(error)))

    def close(self) -> None:
        if self._connection is not None:
            self.flush()
            self._connection.close()
            self._connection = None

    def _commit(self, pending: list[tuple[str, tuple[Any, ...]]]) -> None:
        connection = self._connection
        if connection is None:
            raise sqlite3.ProgrammingError("bus journal is closed")
        connection.execute("BEGIN")
        try:
            for sql, parameters in pending:
                connection.execute(sql, parameters)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _queue(self, sql: str, parameters: tuple[Any, ...], *, lazy: bool = False) -> None:
        self._pending.append((sql, parameters))
        if lazy:
            if self._flush_later is None and self._flush_soon is None:
                loop = asyncio.get_running_loop()
                self._flush_later = loop.call_later(ACK_DELAY, self.flush)
        # Eager writes are committed by `confirm()`, which their callers await.
