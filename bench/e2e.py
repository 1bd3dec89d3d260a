"""End-to-end benchmark: tickets through the four Spoc processes on RabbitMQ and PostgreSQL,
read against raw aio-pika and asyncpg baselines measured in the same run.

    .venv/bin/python -m bench.e2e [--tickets N] [--rate R] [--concurrency C] [--json out.json]

It creates a RabbitMQ vhost and PostgreSQL databases of its own and drops them at the end. It
asserts nothing: it reports (lost and duplicated acknowledgements included). See bench/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Protocol

import httpx
import typer

from bench import baselines
from bench.support import (
    CpuWindow,
    HttpConnection,
    HttpxConnection,
    RabbitVhost,
    RssSampler,
    SinkProcess,
    create_database,
    database_activity,
    drop_database,
    machine_cpu,
)
from spoc.progress import Steps, progress
from spoc_platform.logs import LogLevel
from tests.localstack import SERVICE_NAMES, ProcessStack

TICKETS_PATH = "/api/v1/tickets"
# What one ticket's journey costs the broker: ticket.created, ticket.routed, sla.clock_started
# and notification.sent published once each, and delivered to (routing, notify), (intake, sla),
# (intake, notify) and (intake).
PUBLISHES_PER_TICKET = 4
DELIVERIES_PER_TICKET = 7


class Connection(Protocol):
    async def post(self, path: str, body: bytes) -> tuple[int, bytes]: ...

    def close(self) -> None: ...


ConnectionFactory = Callable[[], Connection]


@dataclass
class Post:
    index: int
    scheduled: float
    sent: float
    answered: float
    status: int
    number: str | None
    error: str | None = None


def ticket_body(index: int) -> bytes:
    return json.dumps(
        {
            "subject": f"VPN drops every few minutes (bench {index})",
            "description": "Since this morning the VPN disconnects every 5 minutes.",
            "type": "incident",
            "impact": "high",
            "urgency": "medium",
            "category": "network",
            "requester": {"name": "Reza Karimi", "email": f"reza{index}@example.org"},
        }
    ).encode()


async def _post_one(conn: Connection, index: int, scheduled: float) -> Post:
    body = ticket_body(index)
    sent = time.monotonic()
    try:
        status, answer = await conn.post(TICKETS_PATH, body)
    except Exception as error:  # noqa: BLE001 - a failed POST is counted and reported
        return Post(index, scheduled, sent, time.monotonic(), 0, None, repr(error))
    answered = time.monotonic()
    if status != 201:
        return Post(index, scheduled, sent, answered, status, None, answer[:200].decode())
    return Post(index, scheduled, sent, answered, status, json.loads(answer)["number"])


async def closed_loop(
    connect: ConnectionFactory, tickets: int, concurrency: int, first_index: int
) -> list[Post]:
    """`concurrency` clients, each POSTing its next ticket as soon as the last is answered."""
    posts: list[Post] = []
    next_index = first_index
    end = first_index + tickets

    async def client() -> None:
        nonlocal next_index
        conn = connect()
        try:
            while next_index < end:
                index = next_index
                next_index += 1
                posts.append(await _post_one(conn, index, time.monotonic()))
        finally:
            conn.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return posts


async def open_loop(
    connect: ConnectionFactory, rate: float, seconds: float, first_index: int
) -> tuple[list[Post], float]:
    """Tickets arrive at a fixed rate whatever the answers do (no coordinated omission): each
    POST takes an idle kept-alive connection, or opens one more. Returns the posts and how late
    the generator was at worst against the schedule."""
    count = max(1, round(rate * seconds))
    idle: list[Connection] = []
    opened: list[Connection] = []
    posts: list[Post] = []
    running: set[asyncio.Task[None]] = set()
    worst_lag = 0.0

    async def one(index: int, scheduled: float) -> None:
        if idle:
            conn = idle.pop()
        else:
            conn = connect()
            opened.append(conn)
        posts.append(await _post_one(conn, index, scheduled))
        idle.append(conn)

    start = time.monotonic() + 0.05
    for i in range(count):
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        worst_lag = max(worst_lag, time.monotonic() - scheduled)
        task = asyncio.create_task(one(first_index + i, scheduled))
        running.add(task)
        task.add_done_callback(running.discard)
    while running:
        await asyncio.gather(*list(running))
    for conn in opened:
        conn.close()
    return posts, worst_lag


@dataclass
class Acks:
    received_at: dict[str, float]
    mails_per_ticket: dict[str, int]
    mails_total: int
    missing: set[str]
    waited: float


async def await_acknowledgements(
    sink: SinkProcess, numbers: set[str], mails_before: int, idle_timeout: float
) -> Acks:
    """Until every number has its mail, or nothing new arrived for `idle_timeout` seconds.
    Polls the sink's count (cheap); copies its records only once the count says all are in."""
    started = time.monotonic()
    target = mails_before + len(numbers)
    last_count = checked = -1
    last_progress = started
    while True:
        count = sink.count()
        now = time.monotonic()
        if count != last_count:
            last_count, last_progress = count, now
        idle = now - last_progress > idle_timeout
        if (count >= target and count != checked) or idle:
            checked = count
            received, per_ticket, total = sink.snapshot()
            missing = numbers - received.keys()
            if not missing or idle:
                break
        await asyncio.sleep(0.02)
    return Acks(received, per_ticket, total, missing, time.monotonic() - started)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(values, 50) * 1000,
        "p90_ms": percentile(values, 90) * 1000,
        "p99_ms": percentile(values, 99) * 1000,
        "max_ms": max(values) * 1000 if values else float("nan"),
    }


async def service_metrics(stack: ProcessStack, service: str) -> dict[str, float]:
    """The service's /metrics as {series with labels: value} (only the spoc_ series)."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{stack.url(service)}/metrics")).text
    values = {}
    for line in text.splitlines():
        if line.startswith("spoc_") and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[series] = float(value)
    return values


def _sum(values: dict[str, float], name: str, **labels: str) -> float:
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        v
        for series, v in values.items()
        if series.startswith(name + "{") and all(w in series for w in wanted)
    )


async def settle(stack: ProcessStack, acknowledged: int, timeout: float = 30) -> float:
    """Waits until intake has projected every notification.sent (the journey's last delivery)
    and every outbox is empty; returns how long that took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        intake = await service_metrics(stack, "intake")
        projected = _sum(intake, "spoc_events_consumed_total", type="notification.sent")
        if projected >= acknowledged:
            pending = [
                _sum(await service_metrics(stack, s), "spoc_outbox_pending") for s in SERVICE_NAMES
            ]
            if not any(pending):
                break
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def run_phase(
    name: str,
    push: Callable[[], Awaitable[tuple[list[Post], float]]],
    *,
    sink: SinkProcess,
    stack: ProcessStack,
    databases: dict[str, str],
    window: CpuWindow,
    ack_timeout: float,
) -> dict[str, Any]:
    """Pushes tickets, waits for their acknowledgements, then until intake has projected the
    last event; CPU and database counters cover all of that (the whole journey's work)."""
    activity_before = await database_activity(databases)
    mails_before = sink.count()
    window.start()
    posts, worst_lag = await push()
    created = [p for p in posts if p.number is not None]
    numbers = {p.number for p in created if p.number is not None}
    last_answer = max(p.answered for p in posts)
    first_sent = min(p.sent for p in posts)
    _say(
        f"  {name}: {len(created)} of {len(posts)} POSTs answered 201 in "
        f"{last_answer - first_sent:.1f} s; waiting for acknowledgements"
    )
    acks = await await_acknowledgements(sink, numbers, mails_before, ack_timeout)
    settle_seconds = await settle(stack, len(acks.received_at))
    window.stop()
    await asyncio.sleep(1.2)  # PostgreSQL flushes its statistics about once a second
    activity_after = await database_activity(databases)
    acked = [p for p in created if p.number in acks.received_at]
    latencies = [acks.received_at[p.number] - p.sent for p in acked if p.number]
    post_latencies = [p.answered - p.sent for p in posts if p.status == 201]
    last_ack = max((acks.received_at[p.number] for p in acked if p.number), default=first_sent)
    errors: dict[str, int] = {}
    for p in posts:
        if p.number is None:
            key = f"{p.status}: {(p.error or '')[:80]}"
            errors[key] = errors.get(key, 0) + 1
    per_ticket = max(1, len(created))
    database: dict[str, dict[str, float]] = {
        service: {
            key: activity_after[service][key] - activity_before.get(service, {}).get(key, 0)
            for key in activity_after[service]
        }
        for service in activity_after
    }
    for counters in database.values():
        counters["commits_per_ticket"] = round(counters["commits"] / per_ticket, 2)
    return {
        "posted": len(posts),
        "created": len(created),
        "post_errors": errors,
        "acknowledged": len(acked),
        "lost": len(acks.missing),
        "lost_numbers": sorted(acks.missing)[:20],
        "duplicated": sum(1 for n in numbers if acks.mails_per_ticket.get(n, 0) > 1),
        "post_seconds": last_answer - first_sent,
        "posts_per_s": len(created) / (last_answer - first_sent),
        "e2e_seconds": last_ack - first_sent,
        "acknowledged_per_s": len(acked) / (last_ack - first_sent) if acked else 0.0,
        "ack_latency": summary_ms(latencies),
        "post_latency": summary_ms(post_latencies),
        "generator_worst_lag_ms": worst_lag * 1000,
        "settle_seconds": settle_seconds,
        "cpu": cpu_report(window, per_ticket),
        "database": database,
    }


def cpu_report(window: CpuWindow, tickets: int) -> dict[str, Any]:
    accounted = sum(window.result.values()) + sum(window.others.values())
    return {
        "others_seconds": {k: round(v, 2) for k, v in list(window.others.items())[:5]},
        "others_total_seconds": round(sum(window.others.values()), 2),
        "wall_seconds": window.wall,
        "machine_busy_share": window.machine_busy_share,
        "machine_busy_seconds": window.machine_busy_seconds,
        "seconds": {k: round(v, 2) for k, v in window.result.items()},
        "ms_per_ticket": {k: round(v * 1000 / tickets, 2) for k, v in window.result.items()},
        "unaccounted_seconds": round(window.machine_busy_seconds - accounted, 2),
    }


def code_version() -> str:
    """The commit measured, and whether the working tree differs from it (outside bench/)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":!bench"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
    except OSError:
        return "unknown"
    return f"{commit} + {len(changed)} uncommitted files" if changed else commit or "unknown"


TUNED_PREFETCH = 8
STARTUP_TIMEOUT = 180.0


class Client(StrEnum):
    raw = "raw"
    httpx = "httpx"


@dataclass(frozen=True)
class Options:
    """One run's settings (the command's options; see `python -m bench.e2e --help`)."""

    tickets: int = 3000
    concurrency: int = 32
    rate: float = 50
    latency_seconds: float = 20
    warmup: int = 50
    ack_timeout: float = 30
    raw_messages: int = 5000
    baseline_seconds: float = 2.0
    skip_baselines: bool = False
    client: Client = Client.raw
    tuned: bool = False
    service_log_level: LogLevel = LogLevel.WARNING
    env: list[str] = field(default_factory=list)
    keep_logs: bool = False
    profile: Path | None = None
    json: Path | None = None


def service_env(args: Options) -> dict[str, str]:
    env = {f"SPOC_{s.upper()}_LOG_LEVEL": args.service_log_level.value for s in SERVICE_NAMES}
    if args.tuned:
        # Pools big enough for everything that can want a connection at once (handlers up to
        # the prefetch, relay, dispatcher, and for intake every HTTP client), so SQLAlchemy never
        # opens overflow connections it closes again; a publish window the loop can confirm
        # within the publish timeout. 4 services stay under PostgreSQL's 100 connections.
        for service in SERVICE_NAMES:
            prefix = f"SPOC_{service.upper()}_"
            demand = TUNED_PREFETCH + 4 + (args.concurrency if service == "intake" else 0)
            env[prefix + "PREFETCH"] = str(TUNED_PREFETCH)
            env[prefix + "DATABASE_POOL_SIZE"] = str(demand)
            env[prefix + "OUTBOX_WINDOW"] = "64"
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--env wants KEY=VALUE, not {item!r}")
        env[key] = value
    return env


def phases_of(args: Options) -> int:
    """Baselines (unless skipped), the stack, warm-up, throughput, latency, tearing down."""
    return 5 if args.skip_baselines else 6


async def run(args: Options, phases: Steps) -> dict[str, Any]:
    report: dict[str, Any] = {
        "settings": {
            "tickets": args.tickets,
            "concurrency": args.concurrency,
            "rate": args.rate,
            "latency_seconds": args.latency_seconds,
            "client": args.client.value,
            "raw_messages": args.raw_messages,
            "baseline_seconds": args.baseline_seconds,
            "service_env": service_env(args),
        },
        "code": code_version(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loop": type(asyncio.get_running_loop()).__module__,
        },
    }
    # SIGTERM tears down like Ctrl-C does: vhost, databases and processes are ours to remove.
    main_task = asyncio.current_task()
    if main_task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    # Others' load on the machine skews every figure here; say how much there was.
    busy, total = machine_cpu()
    await asyncio.sleep(1)
    busy2, total2 = machine_cpu()
    report["machine"]["background_busy_share"] = (busy2 - busy) / max(total2 - total, 1e-9)
    vhost = RabbitVhost()
    vhost.create()
    databases: dict[str, str] = {}
    sink: SinkProcess | None = None
    stack: ProcessStack | None = None
    log_dir = Path(tempfile.mkdtemp(prefix="spoc-bench-"))
    try:
        # -- 1. baselines ---------------------------------------------------------------------
        if not args.skip_baselines:
            phases.advance(note="baselines: raw aio-pika round trips, raw asyncpg writes")
            raw = report["baselines"] = {}
            raw["amqp"] = await baselines.amqp_round_trips(vhost.amqp_url, args.raw_messages)
            databases["raw"] = await create_database("spoc_bench_raw")
            await baselines.prepare_schema(databases["raw"])
            seconds = args.baseline_seconds
            raw["pg_insert_1"] = await baselines.pg_inserts(databases["raw"], 1, seconds)
            raw["pg_insert_8"] = await baselines.pg_inserts(databases["raw"], 8, seconds)
            raw["pg_ticket_outbox_1"] = await baselines.pg_ticket_with_outbox(
                databases["raw"], 1, seconds
            )
            raw["pg_ticket_outbox_8"] = await baselines.pg_ticket_with_outbox(
                databases["raw"], 8, seconds
            )
            await drop_database(databases.pop("raw"))

        # -- 2. the stack ---------------------------------------------------------------------
        phases.advance(note="starting the mail sink and the four services")
        started = time.monotonic()
        sink = SinkProcess()
        sink.start()
        for service in SERVICE_NAMES:
            databases[service] = await create_database(f"spoc_bench_{service}")
        stack = ProcessStack(
            amqp_url=vhost.amqp_url,
            database_urls={s: databases[s] for s in SERVICE_NAMES},
            smtp_url=sink.url,
            log_dir=log_dir,
            extra_env=service_env(args),
        )
        await asyncio.to_thread(stack.migrate)
        for service in SERVICE_NAMES:
            stack.launch(service)
        # Generous: the start-up time is reported, not bounded (a busy machine starts slowly).
        await stack.wait_ready(timeout=STARTUP_TIMEOUT)
        report["startup_seconds"] = time.monotonic() - started
        pids = stack.pids()
        rss = RssSampler({**pids, "mail sink": sink.pid, "bench": os.getpid()})
        rss.sample()
        report["rss_idle_mb"] = {k: v / 2**20 for k, v in rss.last.items()}
        rss.start()

        host, port = "127.0.0.1", stack.ports["intake"]
        connection_class = HttpConnection if args.client == "raw" else HttpxConnection

        def connect() -> Connection:
            return connection_class(host, port)

        def window() -> CpuWindow:
            return CpuWindow(
                groups={
                    **{s: [p] for s, p in pids.items()},
                    "mail sink": [sink.pid],
                    "bench": [os.getpid()],
                },
            )

        phase = {
            "sink": sink,
            "stack": stack,
            "databases": {s: databases[s] for s in SERVICE_NAMES},
            "ack_timeout": args.ack_timeout,
        }
        index = 1
        # A few tickets first: connection pools, prepared statements and imports warm up.
        phases.advance(note=f"warm-up: {args.warmup} tickets")
        report["warmup"] = await run_phase(
            "warm-up", lambda: _closed(connect, args.warmup, 4, index), window=window(), **phase
        )
        index += args.warmup

        phases.advance(
            note=f"throughput: {args.tickets} tickets, {args.concurrency} concurrent clients"
        )
        profilers = start_profilers(args.profile, pids) if args.profile else []
        try:
            report["throughput"] = await run_phase(
                "throughput",
                lambda: _closed(connect, args.tickets, args.concurrency, index),
                window=window(),
                **phase,
            )
        finally:
            stop_profilers(profilers)
        index += args.tickets

        phases.advance(
            note=f"latency: {args.rate:g} tickets/s for {args.latency_seconds:g} s (open loop)"
        )
        report["latency"] = await run_phase(
            "latency",
            lambda: open_loop(connect, args.rate, args.latency_seconds, index),
            window=window(),
            **phase,
        )

        await rss.stop()
        report["rss_max_mb"] = {k: v / 2**20 for k, v in rss.max.items()}
        _, per_ticket, total = sink.snapshot()
        report["mail"] = {
            "total": total,
            "tickets": len(per_ticket),
            "duplicated_tickets": sum(1 for c in per_ticket.values() if c > 1),
        }
        report["service_metrics"] = {
            s: health_counts(await service_metrics(stack, s)) for s in SERVICE_NAMES
        }
    finally:
        phases.advance(note="tearing down")
        if stack is not None:
            with contextlib.suppress(Exception):
                stack.stop()
            report["service_log_problems"] = log_problems(log_dir)
        if sink is not None:
            sink.stop()
        for url in databases.values():
            with contextlib.suppress(Exception):
                await drop_database(url)
        vhost.delete()
        if args.keep_logs or report.get("service_log_problems"):
            report["log_dir"] = str(log_dir)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    report["ratios"] = ratios(report)
    return report


def start_profilers(directory: Path, pids: dict[str, int]) -> list[subprocess.Popen[bytes]]:
    """py-spy on each service during the throughput phase (it costs some CPU itself)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("--profile needs py-spy (uv pip install py-spy)")
    directory.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "100",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(directory / f"{service}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for service, pid in pids.items()
    ]


def stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    for process in profilers:
        process.send_signal(signal.SIGINT)
    for process in profilers:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


async def _closed(
    connect: ConnectionFactory, tickets: int, concurrency: int, first_index: int
) -> tuple[list[Post], float]:
    return await closed_loop(connect, tickets, concurrency, first_index), 0.0


def health_counts(values: dict[str, float]) -> dict[str, float]:
    """Deliveries by outcome, and publishes that were not confirmed: all but ok should be 0."""
    out = {}
    for outcome in ("ok", "duplicate", "retry", "dead", "unhandled"):
        out[f"consumed_{outcome}"] = _sum(values, "spoc_events_consumed_total", outcome=outcome)
    for outcome in ("ok", "failed", "unroutable"):
        out[f"published_{outcome}"] = _sum(values, "spoc_events_published_total", outcome=outcome)
    handled = _sum(values, "spoc_event_handler_duration_seconds_count")
    spent = _sum(values, "spoc_event_handler_duration_seconds_sum")
    out["handler_mean_ms"] = round(spent / handled * 1000, 1) if handled else 0.0
    return out


def log_problems(log_dir: Path) -> dict[str, int]:
    """Lines at WARNING or above in each service's log (they log JSON)."""
    problems = {}
    for path in sorted(log_dir.glob("*.log")):
        count = sum(
            1
            for line in path.read_text(errors="replace").splitlines()
            if '"level": "WARNING"' in line
            or '"level": "ERROR"' in line
            or '"level": "CRITICAL"' in line
            or "Traceback" in line
        )
        if count:
            problems[path.stem] = count
    return problems


def ratios(report: dict[str, Any]) -> dict[str, float]:
    raw = report.get("baselines")
    tp = report.get("throughput")
    if not raw or not tp:
        return {}
    e2e = tp["acknowledged_per_s"]
    amqp = raw["amqp"]["round_trips_per_s"]
    return {
        "e2e_per_amqp_round_trip": e2e / amqp,
        "e2e_deliveries_per_amqp_round_trip": e2e * DELIVERIES_PER_TICKET / amqp,
        "e2e_per_pg_ticket_outbox_8": e2e / raw["pg_ticket_outbox_8"]["per_s"],
        "e2e_per_pg_insert_8": e2e / raw["pg_insert_8"]["per_s"],
        "posts_per_pg_ticket_outbox_8": tp["posts_per_s"] / raw["pg_ticket_outbox_8"]["per_s"],
    }


# --- printing --------------------------------------------------------------------------------


def render(report: dict[str, Any]) -> str:
    lines: list[str] = []
    out = lines.append
    s = report["settings"]
    m = report["machine"]
    out(
        f"Spoc end-to-end benchmark — {m['cpus']} CPUs, Python {m['python']}, "
        f"load generator: {s['client']} HTTP client on {m['loop']}"
    )
    out(f"code: {report['code']}")
    out(f"service env: {' '.join(f'{k}={v}' for k, v in s['service_env'].items())}")
    if "background_busy_share" in m:
        out(f"machine busy before the run (others' load): {m['background_busy_share'] * 100:.0f}%")
    raw = report.get("baselines")
    if raw:
        a = raw["amqp"]
        out("")
        out("BASELINES (same run, same machine)")
        out(
            f"  aio-pika publish+consume round trip (quorum, persistent, confirm window "
            f"{a['window']}, prefetch {a['prefetch']}):  {a['round_trips_per_s']:6.0f} msg/s"
        )
        for key, label in (
            ("pg_insert_1", "asyncpg INSERT+commit, 1 connection"),
            ("pg_insert_8", "asyncpg INSERT+commit, 8 connections"),
            ("pg_ticket_outbox_1", "asyncpg ticket+outbox in one tx, 1 connection"),
            ("pg_ticket_outbox_8", "asyncpg ticket+outbox in one tx, 8 connections"),
        ):
            out(f"  {label:<86}{raw[key]['per_s']:6.0f} /s")
    out("")
    out(
        f"STACK: four processes ready {report.get('startup_seconds', float('nan')):.1f} s after "
        "creating databases (migrations included)"
    )
    tp = report.get("throughput")
    if tp:
        out("")
        out(f"THROUGHPUT: {s['tickets']} tickets, {s['concurrency']} concurrent HTTP clients")
        out(
            "  ACKNOWLEDGED TICKETS/S (first POST → last ack mail)  "
            f"{tp['acknowledged_per_s']:7.1f}"
            f"   ({tp['acknowledged']} in {tp['e2e_seconds']:.1f} s)"
        )
        out(
            f"  POSTs accepted/s (while the stack works)            {tp['posts_per_s']:7.1f}"
            f"   (POST p50 {tp['post_latency']['p50_ms']:.0f} ms, "
            f"p99 {tp['post_latency']['p99_ms']:.0f} ms)"
        )
        out(
            f"  lost {tp['lost']}, duplicated {tp['duplicated']}, POST errors "
            f"{sum(tp['post_errors'].values())}"
        )
        out(_work_table(tp))
    r = report.get("ratios")
    if r:
        out("")
        out("RATIOS")
        for key, label in (
            ("e2e_per_amqp_round_trip", "e2e tickets/s ÷ aio-pika round trips/s"),
            (
                "e2e_deliveries_per_amqp_round_trip",
                f"e2e deliveries/s ({DELIVERIES_PER_TICKET} per ticket) ÷ aio-pika round trips/s",
            ),
            ("e2e_per_pg_ticket_outbox_8", "e2e tickets/s ÷ ticket+outbox tx/s (8 connections)"),
            ("e2e_per_pg_insert_8", "e2e tickets/s ÷ INSERT+commit/s (8 connections)"),
            ("posts_per_pg_ticket_outbox_8", "POSTs/s ÷ ticket+outbox tx/s (8 connections)"),
        ):
            out(f"  {label:<66}{r[key]:7.3f}")
    lat = report.get("latency")
    if lat:
        a, p = lat["ack_latency"], lat["post_latency"]
        out("")
        out(
            f"LATENCY: open loop, {s['rate']:g} tickets/s for {s['latency_seconds']:g} s "
            f"({lat['created']} tickets; generator at worst {lat['generator_worst_lag_ms']:.1f} ms "
            "behind schedule)"
        )
        out(
            f"  POST → ack mail   p50 {a['p50_ms']:7.1f} ms   p90 {a['p90_ms']:7.1f} ms   "
            f"p99 {a['p99_ms']:7.1f} ms   max {a['max_ms']:7.1f} ms"
        )
        out(f"  POST answer       p50 {p['p50_ms']:7.1f} ms   p99 {p['p99_ms']:7.1f} ms")
        out(
            f"  lost {lat['lost']}, duplicated {lat['duplicated']}, POST errors "
            f"{sum(lat['post_errors'].values())}"
        )
        out(_work_table(lat))
    if "rss_max_mb" in report:
        out("")
        out("RSS (MB)          idle   max under load")
        for name, peak in report["rss_max_mb"].items():
            out(f"  {name:<12}{report['rss_idle_mb'].get(name, 0):8.1f}  {peak:8.1f}")
    if "mail" in report:
        mail = report["mail"]
        lost = sum(report[k]["lost"] for k in ("warmup", "throughput", "latency") if k in report)
        out("")
        out(
            f"DELIVERY: lost {lost}, duplicated {mail['duplicated_tickets']} "
            f"({mail['total']} mails for {mail['tickets']} tickets, warm-up included)"
        )
    if report.get("service_metrics"):
        for svc, c in report["service_metrics"].items():
            bad = " ".join(
                f"{k}={v:g}"
                for k, v in c.items()
                if v and k not in {"consumed_ok", "published_ok", "handler_mean_ms"}
            )
            out(
                f"  {svc:<8} consumed {c['consumed_ok']:6g}  published {c['published_ok']:6g}  "
                f"handler mean {c['handler_mean_ms']:6.1f} ms  "
                f"{bad or '(no duplicates, retries, dead letters or failed publishes)'}"
            )
    if report.get("service_log_problems"):
        out(
            f"  warnings/errors in service logs: {report['service_log_problems']} "
            f"(logs kept in {report.get('log_dir')})"
        )
    return "\n".join(lines)


def _work_table(phase: dict[str, Any]) -> str:
    cpu, db = phase["cpu"], phase["database"]
    rows = [
        f"  where the work went ({cpu['wall_seconds']:.1f} s wall, machine "
        f"{cpu['machine_busy_share'] * 100:.0f}% busy):",
        "    process        CPU s  CPU ms/ticket  PG commits/ticket  PG sessions opened",
    ]
    for name, seconds in cpu["seconds"].items():
        counters = db.get(name)
        extra = ""
        if counters:
            extra = f"{counters['commits_per_ticket']:17.1f}  {counters['sessions']:18d}"
        rows.append(
            f"    {name:<12}{seconds:7.1f}  {cpu['ms_per_ticket'][name]:13.1f}  {extra}".rstrip()
        )
    others = cpu["others_total_seconds"]
    named = ", ".join(f"{k} {v:.1f}" for k, v in cpu["others_seconds"].items() if v >= 0.05)
    rows.append(f"    {'others':<12}{others:7.1f}   {named}")
    rows.append(
        f"    {'unaccounted':<12}{cpu['unaccounted_seconds']:7.1f}"
        "   (interrupts, processes that came and went)"
    )
    return "\n".join(rows)


cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@cli.command(help=(__doc__ or "").split("\n\n")[0])
def bench(
    tickets: Annotated[int, typer.Option(min=1, help="Throughput phase.")] = Options.tickets,
    concurrency: Annotated[
        int, typer.Option(min=1, help="HTTP clients in the throughput phase.")
    ] = Options.concurrency,
    rate: Annotated[
        float, typer.Option(min=0.1, help="Latency phase: tickets per second.")
    ] = Options.rate,
    latency_seconds: Annotated[
        float, typer.Option(min=0.1, help="Latency phase: how long.")
    ] = Options.latency_seconds,
    warmup: Annotated[int, typer.Option(min=1, help="Tickets before measuring.")] = Options.warmup,
    ack_timeout: Annotated[
        float, typer.Option(min=1, help="Give up on acks after this many seconds without one.")
    ] = Options.ack_timeout,
    raw_messages: Annotated[
        int, typer.Option(min=1, help="aio-pika baseline: messages.")
    ] = Options.raw_messages,
    baseline_seconds: Annotated[
        float, typer.Option(min=0.1, help="Each PostgreSQL baseline: seconds.")
    ] = Options.baseline_seconds,
    skip_baselines: Annotated[
        bool, typer.Option("--skip-baselines", help="Measure Spoc only.")
    ] = False,
    client: Annotated[
        Client, typer.Option(help="Load generator's HTTP client (raw: lean keep-alive HTTP/1.1).")
    ] = Options.client,
    tuned: Annotated[
        bool,
        typer.Option(
            "--tuned", help="Prefetch 8, pools sized to demand, outbox window 64 (bench/README.md)."
        ),
    ] = False,
    service_log_level: Annotated[
        LogLevel, typer.Option(case_sensitive=False, help="The services' log level.")
    ] = Options.service_log_level,
    env: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY=VALUE",
            help="Extra environment for the services (repeatable), e.g. SPOC_NOTIFY_PREFETCH=128.",
        ),
    ] = None,
    keep_logs: Annotated[
        bool, typer.Option("--keep-logs", help="Keep the services' logs.")
    ] = False,
    profile: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="py-spy each service during the throughput phase (collapsed stacks).",
        ),
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the full report here.")
    ] = None,
) -> None:
    options = Options(
        tickets=tickets,
        concurrency=concurrency,
        rate=rate,
        latency_seconds=latency_seconds,
        warmup=warmup,
        ack_timeout=ack_timeout,
        raw_messages=raw_messages,
        baseline_seconds=baseline_seconds,
        skip_baselines=skip_baselines,
        client=client,
        tuned=tuned,
        service_log_level=service_log_level,
        env=list(env or []),
        keep_logs=keep_logs,
        profile=profile,
        json=json_path,
    )
    for item in options.env:
        if "=" not in item:
            raise typer.BadParameter(f"wants KEY=VALUE, not {item!r}", param_hint="--env")
    measure(options)


def measure(args: Options) -> None:
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    started = time.monotonic()
    try:
        with runner, progress("benchmark", total=phases_of(args)) as phases:
            report = runner.run(run(args, phases))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: vhost, databases and processes removed", file=sys.stderr)
        raise SystemExit(130) from None
    report["bench_seconds"] = time.monotonic() - started
    print(render(report))
    print(f"\n(whole benchmark {report['bench_seconds']:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


def main(argv: Sequence[str] | None = None) -> None:
    cli(args=list(argv) if argv is not None else None, prog_name="python -m bench.e2e")


if __name__ == "__main__":
    main()
