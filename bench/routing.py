"""Routing decisions per second on a busy desk, by one and by two replicas, against a baseline.

ticket.created → triage → owner on PostgreSQL, with 10,000 open tickets and 200 agents in 20
groups.

Each replica is an OS process of its own with routing bootstrapped as the tests do it
(tests/harness.py: the real container on a MemoryBus, messages handed to its consumer), fed
its share of the creations with `--concurrency` in flight, all replicas on one database, so
the agents' row locks and the claim's capacity check are contended as in production. The
baseline, in the same run and the same shape (as many processes, as many connections each),
is a bare asyncpg transaction doing the least a decision writes: a triage row, an outbox row
and one more ticket on an agent's row. Read the ratio.

    .venv/bin/python -m bench.routing [--decisions 3000] [--replicas 1 --replicas 2]
        [--strategy least_loaded] [--concurrency 16] [--open 10000] [--json FILE]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
import yaml

from bench.support import create_database, drop_database, dsn_of, machine_cpu
from spoc.progress import Steps, progress

GROUPS = 20
AGENTS_PER_GROUP = 10
# Room for everyone: 200 × 100 = 20,000 places, half taken by the open tickets, so no decision
# waits in a queue and least-loaded always has a choice.
CAPACITY = 100
Strategy = Literal["least_loaded", "round_robin", "skill_match"]
SEED_PREFIX = "OPEN-"
DECISION_PREFIX = "BENCH-"
WARMUP = 20  # creations each replica handles before the clock starts (not counted)


# --- the desk -------------------------------------------------------------------------------


def group_id(g: int) -> str:
    return f"group-{g:02d}"


def agent_id(g: int, a: int) -> str:
    return f"agent-{g:02d}-{a:02d}"


def desk_document(strategy: Strategy) -> dict[str, Any]:
    """20 groups of 10 agents; a category per group, two subcategories each with keywords (so
    half the creations are classified by their words), skills for skill_match, and rules that
    every decision evaluates (none names a group: the tree decides it)."""
    groups = [
        {
            "id": group_id(g),
            "name": f"Group {g:02d}",
            "tier": 1 + g % 3,
            "strategy": strategy,
            "agent_capacity": CAPACITY,
            "agents": [
                {
                    "id": agent_id(g, a),
                    "name": f"Agent {g:02d}-{a:02d}",
                    "capacity": CAPACITY,
                    # Everyone has the category's skill, half the subcategory's too.
                    "skills": [f"skill-{g:02d}", *([f"skill-{g:02d}-deep"] if a % 2 else [])],
                }
                for a in range(AGENTS_PER_GROUP)
            ],
        }
        for g in range(GROUPS)
    ]
    categories = [
        {
            "id": f"category-{g:02d}",
            "name": f"Category {g:02d}",
            "group": group_id(g),
            "skills": [f"skill-{g:02d}"],
            "subcategories": [
                {
                    "id": "first",
                    "keywords": [f"gadget{g:02d}"],
                    "impact": "low",
                },
                {
                    "id": "second",
                    "keywords": [f"widget{g:02d}", f"gizmo{g:02d}"],
                    "skills": [f"skill-{g:02d}-deep"],
                    "urgency": "high",
                },
            ],
        }
        for g in range(GROUPS)
    ]
    rules = [
        {"name": "outage", "when": {"keywords": ["outage"]}, "then": {"priority_floor": "P1"}},
        {
            "name": "api-incidents",
            "when": {"type": ["incident"], "channel": ["api"]},
            "then": {"tags": ["automated"]},
        },
        {"name": "vip", "when": {"vip": True}, "then": {"priority_floor": "P2", "tags": ["vip"]}},
    ]
    return {
        "routing": {
            "default_group": group_id(0),
            "groups": groups,
            "categories": categories,
            "rules": rules,
            "vip_requesters": ["@board.example.org"],
        }
    }


def creation_body(i: int, ticket_id: uuid.UUID) -> bytes:
    """The i-th ticket.created envelope, as intake publishes it: every group in turn, half
    with a category, half classified by a keyword of their text."""
    from tests.harness import envelope, ticket_created

    g = i % GROUPS
    by_words = (i // GROUPS) % 2 == 1
    second = i % 3 == 0
    keyword = f"widget{g:02d}" if second else f"gadget{g:02d}"
    event = ticket_created(
        number=f"{DECISION_PREFIX}{i:07d}",
        subject=f"The {keyword} stopped working" if by_words else "It stopped working",
        description=(
            f"Since this morning the {keyword} shows an error every few minutes. "
            "Restarting did not help; colleagues see the same."
        ),
        type="incident" if i % 4 else "request",
        channel="api" if i % 5 == 0 else "portal",
        **(
            {}
            if by_words
            else {"category": f"category-{g:02d}", "subcategory": "second" if second else "first"}
        ),
    )
    body: bytes = envelope(event, source="intake", ticket_id=ticket_id).to_bytes()
    return body


# --- the database: migrations, the desk's agents, 10,000 open tickets ------------------------


async def prepare_desk(database_url: str, desk_file: Path, open_tickets: int) -> None:
    """Routing's schema and agents as routing itself sets them up (tests.harness.service), then
    the open tickets in bulk (COPY), each owned by someone of its group (the agents' loads are
    counted from them by `reset`, before each measurement)."""
    import asyncpg

    from tests.harness import service

    async with service("routing", database_url, desk_config=desk_file):
        pass  # migrations upgraded, agents synced from the desk file
    now = datetime.now(UTC)
    rows = []
    handled = []
    per_group = -(-open_tickets // GROUPS)
    for i in range(open_tickets):
        g = i % GROUPS
        a = seeded_owner(i // GROUPS, per_group)
        rows.append(
            (
                uuid.uuid4(),
                f"{SEED_PREFIX}{i:07d}",
                "medium",
                "medium",
                "P3",
                f"category-{g:02d}",
                group_id(g),
                agent_id(g, a),
                now - timedelta(minutes=open_tickets - i),
                True,
            )
        )
        # The inbox holds what was handled within its retention: these creations too.
        handled.append((uuid.uuid4(), "ticket.created", now))
    conn = await asyncpg.connect(dsn_of(database_url))
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "triage",
                records=rows,
                columns=[
                    "ticket_id",
                    "number",
                    "impact",
                    "urgency",
                    "priority",
                    "category",
                    "group_id",
                    "owner_id",
                    "routed_at",
                    "active",
                ],
            )
            await conn.copy_records_to_table(
                "inbox", records=handled, columns=["event_id", "event_type", "handled_at"]
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


# Uneven loads, so a strategy has something to rank: agent a of a group owns a share of its open
# tickets in proportion to a + 5 (at 10,000 open, 26 for the first and 74 for the last of 100).
LOAD_WEIGHTS = [a + 5 for a in range(AGENTS_PER_GROUP)]
MOST_OPEN = CAPACITY * GROUPS * sum(LOAD_WEIGHTS) // max(LOAD_WEIGHTS) // 1000 * 1000


def seeded_owner(k: int, per_group: int) -> int:
    """The owner (agent index) of a group's k-th of `per_group` open tickets."""
    point = (k + 0.5) / per_group * sum(LOAD_WEIGHTS)
    for a, weight in enumerate(LOAD_WEIGHTS):
        point -= weight
        if point < 0:
            return a
    return AGENTS_PER_GROUP - 1


RESET = [
    # Back to the open tickets alone before each measurement, so each starts from the same desk.
    f"DELETE FROM triage WHERE number LIKE '{DECISION_PREFIX}%'",
    "DELETE FROM outbox",
    "DELETE FROM inbox WHERE event_type <> 'ticket.created' OR handled_at > $1",
    "DELETE FROM delivery_failure",
    """UPDATE agent SET open_tickets = COALESCE(load.n, 0), assigned_count = COALESCE(load.n, 0),
                        last_assigned_at = NULL
       FROM agent AS a LEFT JOIN (SELECT owner_id, count(*) AS n FROM triage
                                  WHERE active GROUP BY owner_id) AS load
                       ON load.owner_id = a.id
       WHERE agent.id = a.id""",
]


async def reset(database_url: str, seeded_at: datetime) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn_of(database_url))
    try:
        async with conn.transaction():
            for statement in RESET:
                await conn.execute(statement, *([seeded_at] if "$1" in statement else []))
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def check(database_url: str, ticket_ids: list[uuid.UUID]) -> dict[str, int]:
    """What must hold after a run, whatever the speed: each decision one triage row and one
    ticket.routed, an owner for each (there is room for all), nobody over capacity, and every
    agent's load what their open tickets say."""
    import asyncpg

    conn = await asyncpg.connect(dsn_of(database_url))
    try:
        return {
            "decisions_sent": len(ticket_ids),
            "triage_rows": await conn.fetchval(
                "SELECT count(*) FROM triage WHERE ticket_id = ANY($1::uuid[])", ticket_ids
            ),
            "without_owner": await conn.fetchval(
                "SELECT count(*) FROM triage WHERE ticket_id = ANY($1::uuid[])"
                " AND owner_id IS NULL",
                ticket_ids,
            ),
            "groups_decided": await conn.fetchval(
                "SELECT count(DISTINCT group_id) FROM triage WHERE ticket_id = ANY($1::uuid[])",
                ticket_ids,
            ),
            "classified_by_words": await conn.fetchval(
                "SELECT count(*) FROM triage WHERE ticket_id = ANY($1::uuid[]) AND auto_classified",
                ticket_ids,
            ),
            "routed_events": await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE event_type = 'ticket.routed'"
            ),
            "agents_over_capacity": await conn.fetchval(
                "SELECT count(*) FROM agent WHERE open_tickets > coalesce(capacity, $1)", CAPACITY
            ),
            "agents_with_wrong_load": await conn.fetchval(
                """SELECT count(*) FROM agent LEFT JOIN (
                       SELECT owner_id, count(*) AS n FROM triage WHERE active GROUP BY owner_id
                   ) AS load ON load.owner_id = agent.id
                   WHERE agent.open_tickets <> coalesce(load.n, 0)"""
            ),
        }
    finally:
        await conn.close()


# --- the baseline: a bare transaction doing the least a decision writes ----------------------

BASELINE_SCHEMA = """
CREATE TABLE bench_triage (
    ticket_id uuid PRIMARY KEY,
    number text NOT NULL,
    priority text NOT NULL,
    group_id text NOT NULL,
    owner_id text,
    routed_at timestamptz NOT NULL,
    facts jsonb
);
CREATE TABLE bench_outbox (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    event_type text NOT NULL,
    ticket_id uuid,
    body text NOT NULL,
    created_at timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    published_at timestamptz
);
CREATE INDEX ix_bench_outbox_pending ON bench_outbox (next_attempt_at)
    WHERE published_at IS NULL;
CREATE TABLE bench_agent (
    id text PRIMARY KEY,
    open_tickets integer NOT NULL DEFAULT 0,
    assigned_count integer NOT NULL DEFAULT 0,
    last_assigned_at timestamptz
);
"""


async def prepare_baseline(database_url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn_of(database_url))
    try:
        await conn.execute(BASELINE_SCHEMA)
        await conn.executemany(
            "INSERT INTO bench_agent (id) VALUES ($1)",
            [(agent_id(g, a),) for g in range(GROUPS) for a in range(AGENTS_PER_GROUP)],
        )
    finally:
        await conn.close()


async def _baseline_share(
    database_url: str, indices: list[int], concurrency: int, go: Any
) -> dict[str, Any]:
    import asyncpg

    rng = random.Random(indices[0] if indices else 0)
    conns = [await asyncpg.connect(dsn_of(database_url)) for _ in range(concurrency)]
    facts = json.dumps({"type": "incident", "channel": "portal", "words": ["widget01"]})
    body = "x" * 900  # about a ticket.routed envelope's size

    async def decide(conn: asyncpg.Connection, i: int) -> None:
        ticket_id, now = uuid.uuid4(), datetime.now(UTC)
        g = i % GROUPS
        # Any of the group's agents: the rows are contended about as often as routing's.
        owner = agent_id(g, rng.randrange(AGENTS_PER_GROUP))
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO bench_triage VALUES ($1, $2, 'P3', $3, $4, $5, $6)",
                ticket_id,
                f"{DECISION_PREFIX}{i:07d}",
                group_id(g),
                owner,
                now,
                facts,
            )
            await conn.execute(
                "UPDATE bench_agent SET open_tickets = open_tickets + 1,"
                " assigned_count = assigned_count + 1, last_assigned_at = $2 WHERE id = $1",
                owner,
                now,
            )
            await conn.execute(
                "INSERT INTO bench_outbox (event_id, event_type, ticket_id, body, created_at,"
                " next_attempt_at) VALUES ($1, 'ticket.routed', $2, $3, $4, $4)",
                uuid.uuid4(),
                ticket_id,
                body,
                now,
            )

    try:
        for n, conn in enumerate(conns):
            await decide(conn, -1 - n)  # prepares the statements, not timed
        return await _run_share(
            indices, concurrency, go, lambda worker, i: decide(conns[worker], i)
        )
    finally:
        for conn in conns:
            await conn.close()


# --- routing: its consumer in this process ---------------------------------------------------


async def _routing_share(
    database_url: str, desk_file: Path, indices: list[int], concurrency: int, go: Any
) -> dict[str, Any]:
    from spoc_platform.bus import Delivery, PoisonMessage, RetryLater
    from tests.harness import service

    ticket_ids = {i: uuid.uuid4() for i in indices}
    bodies = {i: creation_body(i, ticket_ids[i]) for i in indices}
    retries = failed = 0
    settings: dict[str, Any] = {
        "desk_config": desk_file,
        "database_pool_size": max(20, concurrency + 4),
        "log_level": "WARNING",
    }
    async with service("routing", database_url, **settings) as routing:
        consumer = routing.runtime.consumer

        async def decide(_worker: int, i: int) -> None:
            nonlocal retries, failed
            for attempt in range(10):
                try:
                    await consumer.handle(
                        Delivery(str(ticket_ids[i]), "ticket.created", bodies[i], attempt)
                    )
                    return
                except RetryLater:
                    retries += 1  # the bus would give it back to the queue: so do we
                except PoisonMessage:
                    break
            failed += 1

        # Warm-ups go to every group too, numbered apart from the measured creations.
        warm = [-1 - n for n in range(WARMUP)]
        for n, i in enumerate(warm):
            ticket_ids[i] = uuid.uuid4()
            bodies[i] = creation_body(9_000_000 + n, ticket_ids[i])
        await _run_share(warm, concurrency, None, decide)
        retries = failed = 0
        report = await _run_share(indices, concurrency, go, decide)
    report.update(
        retries=retries, failed=failed, ticket_ids=[str(t) for i, t in ticket_ids.items()]
    )
    return report


async def _run_share(indices: list[int], concurrency: int, go: Any, work: Any) -> dict[str, Any]:
    """`work(worker, i)` for each index, `concurrency` at a time; after `go` (a callable that
    waits for the parent's word) if given. Start and end are time.monotonic(): CLOCK_MONOTONIC,
    comparable across the replicas' processes."""
    if go is not None:
        await asyncio.get_running_loop().run_in_executor(None, go)
    pending = iter(indices)
    latencies: list[float] = []

    async def worker(n: int) -> None:
        for i in pending:
            began = time.monotonic()
            await work(n, i)
            latencies.append(time.monotonic() - began)

    started, cpu = time.monotonic(), time.process_time()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return {
        "started": started,
        "finished": time.monotonic(),
        "latencies": latencies,
        # This process's CPU only (PostgreSQL's is not in it).
        "cpu_seconds": time.process_time() - cpu,
    }


@dataclass(frozen=True)
class Share:
    kind: Literal["routing", "baseline"]
    database_url: str
    desk_file: Path
    indices: list[int]
    concurrency: int


def _replica_main(share: Share, conn: Connection) -> None:
    """A replica's process: sets up, says ready, waits for go, runs its share, reports."""

    def go() -> None:
        conn.send("ready")
        conn.recv()

    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        if share.kind == "routing":
            report = runner.run(
                _routing_share(
                    share.database_url, share.desk_file, share.indices, share.concurrency, go
                )
            )
        else:
            report = runner.run(
                _baseline_share(share.database_url, share.indices, share.concurrency, go)
            )
    conn.send(report)


async def run_replicas(shares: list[Share], timeout: float = 900) -> list[dict[str, Any]]:
    """Each share in a process of its own, all started together once all are ready."""
    context = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    processes = []
    try:
        for share in shares:
            ours, theirs = context.Pipe()
            process = context.Process(target=_replica_main, args=(share, theirs), daemon=True)
            process.start()
            pipes.append(ours)
            processes.append(process)
        loop = asyncio.get_running_loop()
        for pipe, process in zip(pipes, processes, strict=True):
            ready = await loop.run_in_executor(None, _receive, pipe, process, timeout)
            if ready != "ready":
                raise RuntimeError(f"a replica did not start: {ready!r}")
        for pipe in pipes:
            pipe.send("go")
        return [
            await loop.run_in_executor(None, _receive, pipe, process, timeout)
            for pipe, process in zip(pipes, processes, strict=True)
        ]
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join(10)


def _receive(pipe: Connection, process: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not pipe.poll(0.2):
        if not process.is_alive():
            raise RuntimeError(f"a replica exited early (exit code {process.exitcode})")
        if time.monotonic() > deadline:
            raise TimeoutError("a replica did not answer in time")
    return pipe.recv()


async def lock_waits(database_url: str, interval: float = 0.05) -> list[int]:
    """Samples, until cancelled, how many of the database's sessions wait for a lock (a row
    another decision holds, mostly): whether the replicas contend, not just share the CPU."""
    import asyncpg

    samples: list[int] = []
    conn = await asyncpg.connect(dsn_of(database_url))
    name = database_url.rsplit("/", 1)[-1]
    try:
        while True:
            samples.append(
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = $1 AND wait_event_type = 'Lock'",
                    name,
                )
            )
            await asyncio.sleep(interval)
    except asyncio.CancelledError:
        return samples
    finally:
        await conn.close()


def split(indices: list[int], parts: int) -> Iterator[list[int]]:
    for part in range(parts):
        yield indices[part::parts]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def summary(reports: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [x for r in reports for x in r["latencies"]]
    elapsed = max(r["finished"] for r in reports) - min(r["started"] for r in reports)
    return {
        "count": len(latencies),
        "seconds": elapsed,
        "per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "client_cpu_ms_each": sum(r["cpu_seconds"] for r in reports) / len(latencies) * 1000,
    }


# --- the run --------------------------------------------------------------------------------


async def main(
    *,
    decisions: int,
    replicas: list[int],
    strategy: Strategy,
    concurrency: int,
    open_tickets: int,
    phases: Steps,
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "settings": {
            "decisions": decisions,
            "replicas": replicas,
            "strategy": strategy,
            "concurrency_per_replica": concurrency,
            "open_tickets": open_tickets,
            "groups": GROUPS,
            "agents": GROUPS * AGENTS_PER_GROUP,
            "capacity": CAPACITY,
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "runs": {},
    }
    # SIGTERM tears down like Ctrl-C does: the database is ours to drop.
    main_task = asyncio.current_task()
    if main_task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    # Others' load on the machine skews every figure here; say how much there was.
    busy, total = machine_cpu()
    await asyncio.sleep(1)
    busy2, total2 = machine_cpu()
    report["machine"]["background_busy_share"] = (busy2 - busy) / max(total2 - total, 1e-9)
    database_url = ""
    with tempfile.TemporaryDirectory(prefix="spoc-bench-") as tmp:
        desk_file = Path(tmp) / "desk.yaml"
        desk_file.write_text(yaml.safe_dump(desk_document(strategy), sort_keys=False))
        try:
            database_url = await create_database("spoc_bench_routing")
            phases.advance(
                note=f"desk: migrations, {GROUPS * AGENTS_PER_GROUP} agents, "
                f"{open_tickets} open tickets"
            )
            started = time.monotonic()
            await prepare_desk(database_url, desk_file, open_tickets)
            seeded_at = datetime.now(UTC)
            await prepare_baseline(database_url)
            report["setup_seconds"] = time.monotonic() - started
            indices = list(range(decisions))
            for count in replicas:
                run: dict[str, Any] = {}
                phases.advance(note=f"baseline: bare transactions, {count} × {concurrency}")
                shares = [
                    Share("baseline", database_url, desk_file, part, concurrency)
                    for part in split(indices, count)
                ]
                run["baseline"] = summary(await run_replicas(shares))
                phases.advance(note=f"routing: {decisions} decisions by {count} replica(s)")
                await reset(database_url, seeded_at)
                shares = [
                    Share("routing", database_url, desk_file, part, concurrency)
                    for part in split(indices, count)
                ]
                sampler = asyncio.create_task(lock_waits(database_url))
                try:
                    results = await run_replicas(shares)
                finally:
                    sampler.cancel()
                waits = await sampler
                run["routing"] = summary(results)
                run["routing"]["waiting_for_locks_mean"] = statistics.fmean(waits or [0])
                run["routing"]["waiting_for_locks_max"] = max(waits or [0])
                run["routing"]["retries"] = sum(r["retries"] for r in results)
                run["routing"]["failed"] = sum(r["failed"] for r in results)
                sent = [uuid.UUID(t) for r in results for t in r["ticket_ids"]]
                run["checks"] = await check(database_url, sent)
                run["ratio"] = run["routing"]["per_s"] / run["baseline"]["per_s"]
                report["runs"][str(count)] = run
        finally:
            phases.advance(note="dropping the database")
            if database_url:
                with contextlib.suppress(Exception):
                    await drop_database(database_url)
    return report


def render(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        f"Routing decisions — {s['open_tickets']} open tickets, {s['agents']} agents in "
        f"{s['groups']} groups, strategy {s['strategy']}, {s['decisions']} decisions, "
        f"{s['concurrency_per_replica']} in flight per replica",
        f"  machine: {report['machine']['cpus']} CPUs, busy "
        f"{report['machine']['background_busy_share'] * 100:.0f} % before the run (others' load)",
    ]
    for count, run in report["runs"].items():
        base, routing, checks = run["baseline"], run["routing"], run["checks"]
        problems = {
            k: v
            for k, v in checks.items()
            if (k in {"without_owner", "agents_over_capacity", "agents_with_wrong_load"} and v)
            or (k in {"triage_rows", "routed_events"} and v != checks["decisions_sent"])
        }
        lines += [
            f"  {count} replica(s)",
            f"    baseline: bare triage+agent+outbox tx  {base['per_s']:8.0f} tx/s"
            f"   p50 / p99 {base['p50_ms']:6.1f} / {base['p99_ms']:.1f} ms",
            f"    routing decisions/s                    {routing['per_s']:8.0f}"
            f"        ({run['ratio']:.3f}× bare transaction rate)",
            f"    decision latency p50 / p99 / max       {routing['p50_ms']:8.1f}"
            f" / {routing['p99_ms']:.1f} / {routing['max_ms']:.1f} ms",
            f"    CPU in the replicas per decision       {routing['client_cpu_ms_each']:8.2f} ms"
            f"   (baseline's client {base['client_cpu_ms_each']:.2f} ms)",
            f"    sessions waiting for a lock, mean/max  {routing['waiting_for_locks_mean']:8.2f}"
            f" / {routing['waiting_for_locks_max']} (of {int(count) * s['concurrency_per_replica']}"
            " in flight)",
            f"    groups decided, classified by words    {checks['groups_decided']:8d}"
            f", {checks['classified_by_words']}",
            f"    retried deliveries, failed             {routing['retries']:8d}"
            f", {routing['failed']}",
            "    checks: "
            + (
                "each decision one triage row and one ticket.routed, all owned, "
                "nobody over capacity, loads consistent"
                if not problems
                else f"PROBLEMS {problems} (of {checks['decisions_sent']} sent)"
            ),
        ]
    if {"1", "2"} <= report["runs"].keys():
        one, two = report["runs"]["1"], report["runs"]["2"]
        routing = two["routing"]["per_s"] / one["routing"]["per_s"]
        baseline = two["baseline"]["per_s"] / one["baseline"]["per_s"]
        lines.append(f"  two replicas ÷ one: routing {routing:.2f}×, baseline {baseline:.2f}×")
    return "\n".join(lines)


cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@cli.command(help=(__doc__ or "").splitlines()[0])
def bench(
    decisions: Annotated[int, typer.Option(min=1, help="Creations routed per measurement.")] = 3000,
    replicas: Annotated[
        list[int] | None,
        typer.Option(min=1, max=8, help="Replica counts to measure (repeatable; 1 and 2)."),
    ] = None,
    strategy: Annotated[
        str, typer.Option(help="Every group's strategy: least_loaded, round_robin, skill_match.")
    ] = "least_loaded",
    concurrency: Annotated[int, typer.Option(min=1, help="Creations in flight per replica.")] = 16,
    open_tickets: Annotated[
        int, typer.Option("--open", min=0, max=MOST_OPEN, help="Open tickets on the desk.")
    ] = 10_000,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures here.")
    ] = None,
) -> None:
    if strategy not in ("least_loaded", "round_robin", "skill_match"):
        raise typer.BadParameter(f"unknown strategy {strategy!r}", param_hint="--strategy")
    counts = replicas or [1, 2]
    if open_tickets + (decisions + WARMUP * max(counts)) > GROUPS * AGENTS_PER_GROUP * CAPACITY:
        raise typer.BadParameter("more tickets than the desk has room for", param_hint="--open")
    try:
        with progress("routing benchmark", total=1 + 2 * len(counts) + 1) as phases:
            report = asyncio.run(
                main(
                    decisions=decisions,
                    replicas=counts,
                    strategy=strategy,  # type: ignore[arg-type]
                    concurrency=concurrency,
                    open_tickets=open_tickets,
                    phases=phases,
                )
            )
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: database and processes removed", file=sys.stderr)
        raise SystemExit(130) from None
    print(render(report))
    if json_path:
        json_path.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    cli(prog_name="python -m bench.routing")
