"""Load for the fault suite: tickets opened at a steady rate through intake's API, and the
count of what came out at the mail sink (lost, duplicated, re-sent with the same Message-ID)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from email.message import Message

import asyncpg
import httpx

from spoc_platform.db import create_engine
from tests.localstack import MailSink
from tests.support import mail_owed

TICKETS_PATH = "/api/v1/tickets"
# Answers worth asking again with the same Idempotency-Key: intake was down, restarting or busy.
RETRYABLE = {409, 429, 500, 502, 503, 504}


@dataclass
class Load:
    """What intake answered: the tickets it accepted (201), and every other outcome counted."""

    accepted: list[str] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    retries: int = 0


def ticket_body(index: int) -> bytes:
    return json.dumps(
        {
            "subject": f"Printer on floor 3 jams (fault suite {index})",
            "description": "Every second page since this morning.",
            "type": "incident",
            "impact": "medium",
            "urgency": "medium",
            "requester": {"name": "Leila Ahmadi", "email": f"leila+{index}@example.org"},
        }
    ).encode()


async def open_tickets(
    intake_url: str, *, count: int, rate: float, give_up_after: float = 60.0
) -> Load:
    """Opens `count` tickets at `rate` per second. A POST that fails for want of intake (killed,
    restarting) is sent again with the same Idempotency-Key, as a careful client would, so every
    ticket intake committed is known by its number — none is "lost" by the client itself."""
    load = Load()
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=intake_url, timeout=10, limits=limits) as client:

        async def one(index: int, at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            key = f"faults-{uuid.uuid4()}"
            body = ticket_body(index)
            deadline = time.monotonic() + give_up_after
            while True:
                outcome: str
                try:
                    response = await client.post(
                        TICKETS_PATH,
                        content=body,
                        headers={"Content-Type": "application/json", "Idempotency-Key": key},
                    )
                except httpx.HTTPError as error:
                    outcome = type(error).__name__
                else:
                    if response.status_code in (200, 201):
                        load.accepted.append(str(response.json()["number"]))
                        return
                    outcome = str(response.status_code)
                    if response.status_code not in RETRYABLE:
                        load.refused[outcome] += 1
                        return
                if time.monotonic() > deadline:
                    load.refused[f"gave up after {outcome}"] += 1
                    return
                load.retries += 1
                await asyncio.sleep(0.5)

        start = time.monotonic()
        await asyncio.gather(*(one(i, start + i / rate) for i in range(count)))
    return load


@dataclass
class Tally:
    """One scenario's outcome, as the summary line shows it."""

    scenario: str
    accepted: int
    acknowledged: int
    lost: int
    duplicated: int
    resent_same_id: int
    dead: int
    seconds: float
    refused: dict[str, int] = field(default_factory=dict)
    # Seconds from the start of the load to: its last answer, the last acknowledgement, quiet.
    phases: dict[str, float] = field(default_factory=dict)
    fault: str = ""
    # What a scenario found wrong beyond the counts (e.g. consumers stalled by the alarm).
    problem: str = ""
    numbers: list[str] = field(default_factory=list)
    lost_numbers: list[str] = field(default_factory=list)
    duplicated_numbers: list[str] = field(default_factory=list)

    def line(self) -> str:
        refused = f" refused={dict(self.refused)}" if self.refused else ""
        phases = " ".join(f"{k}@{v:.0f}s" for k, v in self.phases.items())
        return (
            f"{self.scenario:<22} accepted={self.accepted:<4} acknowledged={self.acknowledged:<4}"
            f" lost={self.lost:<3} duplicated={self.duplicated:<3}"
            f" (same Message-ID: {self.resent_same_id}) dead={self.dead:<3}"
            f" {self.seconds:5.1f}s ({phases}){refused}\n{'':<22} {self.fault}"
            + (f"\n{'':<22} {self.problem}" if self.problem else "")
        )

    @property
    def bad(self) -> bool:
        return bool(self.lost or self.dead or self.duplicated > self.resent_same_id or self.problem)


def extras(numbers: list[str], sink: MailSink) -> int:
    """Mails beyond the first for these tickets, counted again at the end of the session: a
    re-send that came after its scenario was counted shows here."""
    mail = mail_by_ticket(sink)
    return sum(max(0, len(mail.get(number, [])) - 1) for number in numbers)


def mail_by_ticket(sink: MailSink) -> dict[str, list[Message]]:
    with sink._lock:  # the SMTP thread appends while we read
        messages = list(sink.messages)
    found: dict[str, list[Message]] = {}
    for message in messages:
        found.setdefault(str(message.get("X-Spoc-Ticket")), []).append(message)
    return found


def count(
    scenario: str,
    load: Load,
    sink: MailSink,
    *,
    dead: int,
    seconds: float,
    phases: dict[str, float] | None = None,
) -> Tally:
    mail = mail_by_ticket(sink)
    lost: list[str] = []
    duplicated: list[str] = []
    extra = same_id = 0
    for number in load.accepted:
        sent = mail.get(number, [])
        if not sent:
            lost.append(number)
            continue
        if len(sent) > 1:
            duplicated.append(number)
            extra += len(sent) - 1
            ids = [m.get("Message-ID") for m in sent]
            same_id += len(ids) - len(set(ids)) if ids[0] else 0
    return Tally(
        scenario=scenario,
        accepted=len(load.accepted),
        acknowledged=len(load.accepted) - len(lost),
        lost=len(lost),
        duplicated=extra,
        resent_same_id=same_id,
        dead=dead,
        seconds=seconds,
        refused=dict(load.refused),
        phases=phases or {},
        numbers=list(load.accepted),
        lost_numbers=lost,
        duplicated_numbers=duplicated,
    )


async def unfinished_work(database_urls: dict[str, str]) -> dict[str, int]:
    """Rows still owed by a service: unpublished outbox rows everywhere, pending mail in notify.
    Read straight from the services' databases: no API says "nothing left to do" yet."""
    owed: dict[str, int] = {}
    for service, url in database_urls.items():
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            owed[f"{service} outbox"] = int(
                await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            )
        finally:
            await conn.close()
    # Due, waiting for a retry or being sent: the same "notify is idle" as every mail count's.
    notify = create_engine(database_urls["notify"], pool_size=1)
    try:
        owed["notify pending mail"] = await mail_owed(notify)
    finally:
        await notify.dispose()
    return {k: v for k, v in owed.items() if v}
