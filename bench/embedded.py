"""Benchmark of the embedded default (`spoc up`): time to ready, tickets/s, latency, memory.

Each figure comes with a baseline measured in the same run, so it reads as a ratio on a noisy
machine: ready time against a bare `import fastapi, sqlalchemy` process, tickets/s against raw
aiosqlite "ticket + outbox row" transactions on the same disk.

    .venv/bin/python -m bench.embedded [--tickets 1000] [--concurrency 16] [--idle-seconds 10]
"""

from __future__ import annotations

import asyncio
import json
import mailbox
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated

import httpx
import psutil
import typer

from spoc.progress import Steps, progress
from tests.localstack import _free_port

TICKET = {
    "subject": "Benchmark ticket",
    "description": "Measuring the embedded default.",
    "type": "request",
    "requester": {"name": "Bench Mark", "email": "bench@example.org"},
}


def bare_import_seconds() -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import fastapi, sqlalchemy.ext.asyncio, pydantic"], check=True
    )
    return time.perf_counter() - started


async def sqlite_ticket_outbox_rate(directory: Path, count: int = 2000) -> float:
    """Raw aiosqlite, WAL + synchronous=NORMAL: one ticket row and one outbox row per commit."""
    import aiosqlite

    async with aiosqlite.connect(directory / "baseline.sqlite3") as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("CREATE TABLE ticket (id TEXT PRIMARY KEY, body TEXT)")
        await db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, event_id TEXT, body TEXT)")
        await db.commit()
        body = json.dumps(TICKET)
        started = time.perf_counter()
        for _ in range(count):
            await db.execute("INSERT INTO ticket VALUES (?, ?)", (str(uuid.uuid4()), body))
            await db.execute(
                "INSERT INTO outbox (event_id, body) VALUES (?, ?)", (str(uuid.uuid4()), body)
            )
            await db.commit()
        return count / (time.perf_counter() - started)


async def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 60) -> float:
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=2) as client:
        while time.perf_counter() - started < timeout:
            if process.poll() is not None:
                raise RuntimeError("spoc up exited early")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.01)
    raise TimeoutError("spoc up never became ready")


def start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, SPOC_INTAKE_LOG_LEVEL="WARNING")
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "spoc"),
            "up",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def push_tickets(
    base: str, maildir: Path, count: int, concurrency: int
) -> tuple[float, list[float], list[float]]:
    posted_at: dict[str, float] = {}
    post_latency: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            queue.get_nowait()
            sent = time.time()
            response = await client.post("/api/v1/tickets", json=TICKET)
            post_latency.append(time.time() - sent)
            response.raise_for_status()
            posted_at[response.json()["number"]] = sent

    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    new = maildir / "new"
    while len(os.listdir(new)) < count:
        if time.perf_counter() - started > 300:
            raise TimeoutError(f"only {len(os.listdir(new))} of {count} acknowledged")
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started

    box = mailbox.Maildir(maildir, create=False)
    acknowledged: dict[str, float] = {}
    for key in box.keys():
        number = box.get_message(key)["X-Spoc-Ticket"]
        acknowledged[number] = os.stat(new / key).st_mtime
    latency = [acknowledged[n] - posted_at[n] for n in posted_at if n in acknowledged]
    return count / elapsed, latency, post_latency


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# Import baseline, SQLite baseline, fresh start, tickets, idle, restart.
PHASES = 6


async def main(
    tickets: int, concurrency: int, idle_seconds: float, phases: Steps
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="spoc-bench-") as tmp:
        root = Path(tmp)
        phases.advance(note="baseline: bare framework import")
        bare = bare_import_seconds()
        phases.advance(note="baseline: raw aiosqlite ticket+outbox transactions")
        baseline_rate = await sqlite_ticket_outbox_rate(root)

        port = _free_port()
        phases.advance(note="spoc up on a fresh data directory")
        process = start(root / "desk", port)
        base = f"http://127.0.0.1:{port}"
        try:
            ready_fresh = await wait_ready(base, process)
            phases.advance(note=f"{tickets} tickets, {concurrency} concurrent clients")
            rate, latency, post_latency = await push_tickets(
                base, root / "desk" / "mail", tickets, concurrency
            )
            rss_loaded = rss_mb(process.pid)
            phases.advance(note=f"idle for {idle_seconds:g} s")
            idle_from = cpu_seconds(process.pid)
            await asyncio.sleep(idle_seconds)
            idle_share = (cpu_seconds(process.pid) - idle_from) / idle_seconds
        finally:
            stop(process)
        phases.advance(note="spoc up on the existing data directory")
        process = start(root / "desk", port)
        try:
            ready_again = await wait_ready(base, process)
        finally:
            stop(process)

    results = {
        "bare_import_s": bare,
        "ready_fresh_s": ready_fresh,
        "ready_existing_s": ready_again,
        "sqlite_ticket_outbox_tx_per_s": baseline_rate,
        "tickets_per_s": rate,
        "ack_latency_p50_ms": percentile(latency, 0.5) * 1000,
        "ack_latency_p99_ms": percentile(latency, 0.99) * 1000,
        "post_latency_p50_ms": statistics.median(post_latency) * 1000,
        "post_latency_p99_ms": percentile(post_latency, 0.99) * 1000,
        "rss_mb_after_load": rss_loaded,
        "idle_cpu_share_of_a_core": idle_share,
    }
    r = results
    lines = [
        f"Spoc embedded default — {tickets} tickets, {concurrency} concurrent clients",
        f"  baseline: bare framework import       {bare:8.2f} s",
        f"  ready, fresh data dir (migrations)    {ready_fresh:8.2f} s"
        f"  ({ready_fresh / bare:.1f}× bare import)",
        f"  ready, existing data dir              {ready_again:8.2f} s",
        f"  baseline: raw aiosqlite ticket+outbox {baseline_rate:8.0f} tx/s",
        f"  acknowledged tickets/s                {rate:8.1f}"
        f"    ({rate / baseline_rate:.3f}× raw tx rate)",
        f"  POST→acknowledgement p50 / p99        {r['ack_latency_p50_ms']:8.0f}"
        f" / {r['ack_latency_p99_ms']:.0f} ms",
        f"  POST answered p50 / p99               {r['post_latency_p50_ms']:8.1f}"
        f" / {r['post_latency_p99_ms']:.1f} ms",
        f"  RSS after load                        {rss_loaded:8.1f} MB",
        f"  {f'idle CPU, {idle_seconds:g} s after load':<38}{idle_share * 100:8.2f} % of a core",
    ]
    print("\n".join(lines))
    return results


cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@cli.command(help=(__doc__ or "").splitlines()[0])
def bench(
    tickets: Annotated[int, typer.Option(min=1, help="Tickets to push.")] = 1000,
    concurrency: Annotated[int, typer.Option(min=1, help="Concurrent HTTP clients.")] = 16,
    idle_seconds: Annotated[
        float, typer.Option(min=0.5, help="How long idle CPU is measured after the load.")
    ] = 10.0,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures here.")
    ] = None,
) -> None:
    with progress("embedded benchmark", total=PHASES) as phases:
        figures = asyncio.run(main(tickets, concurrency, idle_seconds, phases))
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    cli(prog_name="python -m bench.embedded")
