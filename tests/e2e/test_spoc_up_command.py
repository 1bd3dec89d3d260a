"""The README's first command, run as a newcomer would: `spoc up`, then one ticket."""

from __future__ import annotations

import asyncio
import mailbox
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from spoc.localstack import _free_port
from tests.e2e.journey import acknowledged_view, assert_requester_view, open_ticket

pytestmark = pytest.mark.e2e


async def test_spoc_up_serves_a_ticket_end_to_end_and_stops_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    data = tmp_path / "desk"
    spoc = Path(sys.executable).parent / "spoc"
    process = subprocess.Popen(
        [str(spoc), "up", "--data-dir", str(data), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, (
                    process.stdout.read().decode() if process.stdout else ""
                )
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "spoc up never became ready"
                await asyncio.sleep(0.05)

            created = await open_ticket(client)
            assert_requester_view(await acknowledged_view(client, created), created)
            for service in ("routing", "sla", "notify"):
                assert (await client.get(f"/{service}/readyz")).status_code == 200
            assert "spoc_events_consumed_total" in (await client.get("/metrics")).text

        box = mailbox.Maildir(data / "mail", create=False)
        assert len(box) == 1
        assert sorted(p.name for p in data.glob("*.sqlite3")) == [
            "intake.sqlite3",
            "notify.sqlite3",
            "routing.sqlite3",
            "sla.sqlite3",
        ]
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
