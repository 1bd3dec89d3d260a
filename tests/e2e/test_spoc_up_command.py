"""The README's first command, run as a newcomer would: `spoc up`, then one ticket."""

from __future__ import annotations

import asyncio
import json
import mailbox
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.journey import acknowledged_view, assert_requester_view, open_ticket
from tests.e2e.stored_time import an_hour_passes
from tests.localstack import _free_port
from tests.support import eventually, until_notify_is_idle

pytestmark = pytest.mark.e2e


SPOC = Path(sys.executable).parent / "spoc"


def spoc_up(data: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(SPOC), "up", "--data-dir", str(data), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
    )


async def wait_ready(client: httpx.AsyncClient, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "spoc up never became ready"
        await asyncio.sleep(0.05)


async def test_spoc_up_serves_a_ticket_end_to_end_and_stops_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    data = tmp_path / "desk"
    process = spoc_up(data, port)
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            await wait_ready(client, process)

            created = await open_ticket(client)
            assert_requester_view(await acknowledged_view(client, created), created)
            for service in ("routing", "sla", "notify"):
                assert (await client.get(f"/{service}/readyz")).status_code == 200
            assert "spoc_events_consumed_total" in (await client.get("/metrics")).text
        await until_notify_is_idle(f"sqlite+aiosqlite:///{data / 'notify.sqlite3'}")

        box = mailbox.Maildir(data / "mail", create=False)
        assert len(box) == 1
        assert sorted(p.name for p in data.glob("*.sqlite3")) == [
            "bus.sqlite3",  # what the in-process bus holds, kept across restarts
            "intake.sqlite3",
            "notify.sqlite3",
            "routing.sqlite3",
            "sla.sqlite3",
        ]
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0


async def test_a_second_spoc_up_on_the_same_data_directory_is_refused_with_a_clear_message(
    tmp_path: Path,
) -> None:
    data = tmp_path / "desk"
    port = _free_port()
    first = spoc_up(data, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            await wait_ready(client, first)

            second = await asyncio.create_subprocess_exec(
                *(str(SPOC), "up", "--data-dir", str(data), "--port", str(_free_port())),
                stderr=asyncio.subprocess.PIPE,
            )
            _, stderr = await asyncio.wait_for(second.communicate(), 60)

            message = stderr.decode()
            assert second.returncode == 2, message
            assert f"data directory {data.resolve()} is in use" in message
            assert f"pid {first.pid}" in message
            assert (await client.get("/readyz")).status_code == 200  # the first runs on
    finally:
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=20) == 0


async def test_tickets_in_flight_when_spoc_up_is_killed_are_acknowledged_an_hour_later(
    tmp_path: Path,
) -> None:
    """kill -9 under load, no clean stop at all; then the next start, an hour later."""
    data = tmp_path / "desk"
    port = _free_port()
    # One message at a time per consumer: the burst queues up on the bus, where a kill hits it.
    one_at_a_time = {f"SPOC_{s}_PREFETCH": "1" for s in ("INTAKE", "ROUTING", "SLA", "NOTIFY")}
    first = spoc_up(data, port, **one_at_a_time)
    numbers: list[str] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        await wait_ready(client, first)
        for _ in range(6):  # a burst, so that much is on the bus when the kill comes
            burst = await asyncio.gather(*(open_ticket(client) for _ in range(10)))
            numbers += [created["number"] for created in burst]
    first.kill()  # right after the last ticket was accepted: most journeys are under way
    first.wait(timeout=20)
    assert _mail_count(data) < len(numbers)  # the kill really interrupted the journeys
    an_hour_passes(data)

    port = _free_port()
    again = spoc_up(data, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            await wait_ready(client, again)

            async def every_ticket_acknowledged() -> bool:
                return {number for number, _ in _acknowledged(data)} == set(numbers)

            await eventually(every_ticket_acknowledged, timeout=40, message="tickets lost")
            await until_notify_is_idle(f"sqlite+aiosqlite:///{data / 'notify.sqlite3'}")
    finally:
        again.send_signal(signal.SIGINT)
        assert again.wait(timeout=20) == 0
    # The only tolerated extra: a mail sent just before the kill and again after it, under
    # the same Message-ID (so the requester's client shows it once).
    by_ticket: dict[str, set[str]] = {}
    for number, message_id in _acknowledged(data):
        by_ticket.setdefault(number, set()).add(message_id)
    assert all(len(ids) == 1 for ids in by_ticket.values()), by_ticket


def _mail_count(data: Path) -> int:
    return len(mailbox.Maildir(data / "mail", create=True))


def _acknowledged(data: Path) -> list[tuple[str, str]]:
    box = mailbox.Maildir(data / "mail", create=True)
    return [(str(m["X-Spoc-Ticket"]), str(m["Message-ID"])) for m in box]


async def test_spoc_up_prints_its_banner_first_and_logs_utc_json_without_colour(
    tmp_path: Path,
) -> None:
    """A fresh data directory migrates four databases: quietly, so the banner comes first."""
    port = _free_port()
    process = spoc_up(tmp_path / "desk", port)  # output piped: JSON log lines
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            await wait_ready(client, process)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    assert process.stdout is not None
    lines = process.stdout.read().decode().splitlines()

    assert lines[0].startswith(f"Spoc embedded default on http://127.0.0.1:{port}"), lines[:3]
    assert not [line for line in lines if "alembic" in line]
    logged = [json.loads(line) for line in lines[1:]]
    assert any(entry["logger"] == "uvicorn.error" for entry in logged)
    for entry in logged:
        assert "color_message" not in entry and "\x1b" not in json.dumps(entry)
        moment = datetime.fromisoformat(entry["time"])
        assert entry["time"].endswith("Z") and moment.utcoffset() == timedelta(0)
