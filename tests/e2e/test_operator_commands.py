"""The operator's commands against a real `spoc up`: `spoc status` and `spoc dead-letters`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.localstack import _free_port

pytestmark = pytest.mark.e2e

SPOC = Path(sys.executable).parent / "spoc"
TOKEN = "embedded-admin-token-for-the-test"


@pytest.fixture
def embedded_desk(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ}
    for service in ("INTAKE", "ROUTING", "SLA", "NOTIFY"):
        env[f"SPOC_{service}_ADMIN_TOKEN"] = TOKEN
    process = subprocess.Popen(
        [str(SPOC), "up", "--data-dir", str(tmp_path / "desk"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(_wait_ready(process, base))
        yield base
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0


async def _wait_ready(process: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "spoc up never became ready"
            await asyncio.sleep(0.05)


def spoc(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOC_")}
    return subprocess.run(
        [str(SPOC), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_spoc_status_shows_every_embedded_service_ready_and_exits_zero(embedded_desk: str) -> None:
    # The desk was started with an admin token: /metrics wants it too.
    refused = spoc("status", "--url", embedded_desk)
    assert "/metrics wants a token" in refused.stdout, refused.stdout
    done = spoc("status", "--url", embedded_desk, "--token", TOKEN)

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == [
        "SERVICE",
        "READINESS",
        "QUEUE",
        "CONSUMERS",
        "OUTBOX",
        "OLDEST",
        "DEAD",
        "OVERDUE",
    ]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"intake", "routing", "sla", "notify"}
    for service, row in rows.items():
        # ready, an in-process queue with nothing waiting, an empty outbox, no dead letters
        assert row[1:7] == ["ready", "0", "in-process", "0", "0s", "0"], (service, row)
    assert rows["sla"][7] == "0"


def test_spoc_status_exits_non_zero_when_nothing_answers() -> None:
    done = spoc("status", "--url", f"http://127.0.0.1:{_free_port()}")

    assert done.returncode == 1
    assert done.stdout.count("NOT READY") == 4
    assert "unreachable" in done.stdout


def test_dead_letters_of_the_embedded_desk_are_read_through_its_admin_api(
    embedded_desk: str,
) -> None:
    listed = spoc("dead-letters", "list", "routing", "--url", embedded_desk, "--token", TOKEN)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert listed.stdout.strip() == "routing: no dead letters"

    as_json = spoc("dead-letters", "list", "intake", "--embedded", "--url", embedded_desk,
                   "--token", TOKEN, "--json")  # fmt: skip
    assert (as_json.returncode, as_json.stdout.strip()) == (0, "[]")

    replayed = spoc("dead-letters", "replay", "sla", "--all", "--url", embedded_desk,
                    "--token", TOKEN)  # fmt: skip
    assert (replayed.returncode, replayed.stdout.strip()) == (0, "sla: replayed 0")

    refused = spoc("dead-letters", "list", "notify", "--url", embedded_desk, "--token", "wrong")
    assert refused.returncode == 2
    assert "refused (401)" in refused.stderr
