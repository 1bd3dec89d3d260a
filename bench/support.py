"""What the benchmark needs around Spoc: throw-away databases and vhosts, process statistics
(psutil), the mail sink in a process of its own, and a lean HTTP/1.1 client.

The benchmark runs from a source checkout with the development dependencies, as the tests
do: it shares their local stack (tests.localstack: the mail sink, the four processes)."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import httpx
import psutil

from tests import localstack

POSTGRES_ADMIN_DSN = os.environ.get(
    "SPOC_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_HOST = os.environ.get("SPOC_BENCH_AMQP_HOST", "127.0.0.1")
RABBITMQ_API = os.environ.get("SPOC_BENCH_RABBITMQ_API", "http://127.0.0.1:15672/api")
RABBITMQ_AUTH = ("guest", "guest")


# --- PostgreSQL and RabbitMQ of our own ------------------------------------------------------


def dsn_of(url: str) -> str:
    """asyncpg's DSN for a SQLAlchemy URL (postgresql+asyncpg://… → postgresql://…)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def create_database(prefix: str) -> str:
    """A fresh, empty database; returns its SQLAlchemy asyncpg URL (what services take)."""
    return await localstack.create_database(POSTGRES_ADMIN_DSN, prefix)


async def drop_database(url: str) -> None:
    await localstack.drop_database(POSTGRES_ADMIN_DSN, url)


async def database_activity(urls: dict[str, str]) -> dict[str, dict[str, int]]:
    """Cumulative counters of each database: sessions opened, commits and rollbacks (PostgreSQL
    flushes these about once a second, so read them after a pause)."""
    import asyncpg

    names = {url.rsplit("/", 1)[-1]: key for key, url in urls.items()}
    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT datname, sessions, xact_commit, xact_rollback FROM pg_stat_database"
            " WHERE datname = ANY($1::text[])",
            list(names),
        )
    finally:
        await conn.close()
    return {
        names[r["datname"]]: {
            "sessions": r["sessions"] or 0,
            "commits": r["xact_commit"] or 0,
            "rollbacks": r["xact_rollback"] or 0,
        }
        for r in rows
    }


class RabbitVhost:
    """A vhost of our own through the management API, deleted (with its queues) at the end."""

    def __init__(self, prefix: str = "spoc-bench") -> None:
        self.name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self._api = httpx.Client(base_url=RABBITMQ_API, auth=RABBITMQ_AUTH, timeout=10)

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@{AMQP_HOST}:5672/{self.name}?heartbeat=10&reconnect_interval=1"

    def create(self) -> None:
        self._api.put(f"/vhosts/{self.name}").raise_for_status()
        self._api.put(
            f"/permissions/{self.name}/guest",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()

    def queues(self) -> list[dict[str, Any]]:
        response = self._api.get(f"/queues/{self.name}")
        response.raise_for_status()
        return list(response.json())

    def delete(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self._api.delete(f"/vhosts/{self.name}")
        self._api.close()


# --- process figures (psutil) -----------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (None once it is gone)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def rss_bytes(pid: int) -> int | None:
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


def pids_named(*names: str) -> list[int]:
    """Processes whose command name is one of `names` (e.g. beam.smp, postgres)."""
    return [pid for pid, (name, *_) in _all_processes().items() if name in names]


def _all_processes() -> dict[int, tuple[str, float, float, float]]:
    """{pid: (name, own CPU seconds, CPU seconds of its reaped children, start time)}."""
    found = {}
    for process in psutil.process_iter(["name", "cpu_times", "create_time"]):
        info = process.info
        times = info["cpu_times"]
        if times is None or info["create_time"] is None:
            continue  # gone, or not ours to read
        own = times.user + times.system
        reaped = getattr(times, "children_user", 0.0) + getattr(times, "children_system", 0.0)
        found[process.pid] = (info["name"] or "", own, reaped, info["create_time"])
    return found


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, over all cores."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    # Guest time is counted in user already.
    total = sum(
        getattr(times, name, 0.0)
        for name in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    )
    return total - idle, total


# Processes known by their command name; everything else is someone else's.
NAMED_GROUPS = {"beam.smp": "rabbitmq", "erl_child_setup": "rabbitmq", "postgres": "postgresql"}


@dataclass
class CpuWindow:
    """CPU seconds per group of processes between `start()` and `stop()`: our own processes by
    pid, RabbitMQ and PostgreSQL by command name (ended PostgreSQL backends through the CPU
    time the postmaster reaped), and the rest of the machine by command name."""

    groups: dict[str, list[int]] = field(default_factory=dict)
    _start: dict[int, tuple[str, float, float, float]] = field(default_factory=dict)
    _machine: tuple[float, float] = (0.0, 0.0)
    _wall: float = 0.0
    result: dict[str, float] = field(default_factory=dict)
    others: dict[str, float] = field(default_factory=dict)
    machine_busy_seconds: float = 0.0
    machine_busy_share: float = 0.0
    wall: float = 0.0

    def start(self) -> None:
        self._start = _all_processes()
        self._machine = machine_cpu()
        self._wall = time.monotonic()

    def stop(self) -> None:
        end = _all_processes()
        busy, total = machine_cpu()
        self.wall = time.monotonic() - self._wall
        ours = {pid: name for name, pids in self.groups.items() for pid in pids}
        result = dict.fromkeys([*self.groups, "rabbitmq", "postgresql"], 0.0)
        others: dict[str, float] = {}
        for pid, (comm, own, reaped, started) in end.items():
            before = self._start.get(pid)
            if before is not None and before[3] != started:
                before = None  # the pid was reused: a new process, counted from 0
            used = own - (before[1] if before else 0.0)
            reaped_now = reaped - (before[2] if before else 0.0)
            if pid in ours:
                result[ours[pid]] += used
            elif comm in NAMED_GROUPS:
                # The postmaster reaps its backends: their CPU lands in its children's time.
                result[NAMED_GROUPS[comm]] += used + (reaped_now if comm == "postgres" else 0)
            elif used > 0:
                others[comm] = others.get(comm, 0.0) + used
        for pid, (comm, own, _, _) in self._start.items():
            if pid not in end and comm == "postgres":
                # Reaped during the window with its whole life's CPU; keep only the window's.
                result["postgresql"] -= own
        self.result = result
        self.others = dict(sorted(others.items(), key=lambda kv: -kv[1]))
        self.machine_busy_seconds = busy - self._machine[0]
        elapsed = total - self._machine[1]
        self.machine_busy_share = self.machine_busy_seconds / elapsed if elapsed else 0.0


class RssSampler:
    """Samples the RSS of some processes every `interval` seconds; keeps the maximum of each."""

    def __init__(self, pids: dict[str, int], interval: float = 0.25) -> None:
        self.pids = pids
        self.interval = interval
        self.max: dict[str, int] = dict.fromkeys(pids, 0)
        self.last: dict[str, int] = dict.fromkeys(pids, 0)
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        for name, pid in self.pids.items():
            rss = rss_bytes(pid)
            if rss is not None:
                self.last[name] = rss
                self.max[name] = max(self.max[name], rss)

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample()


# --- the mail sink, in a process of its own -------------------------------------------------


def _sink_main(conn: Connection) -> None:
    from tests.localstack import MailSink

    sink = MailSink()
    sink.start()
    conn.send(sink.url)
    while True:
        command = conn.recv()
        if command == "count":
            conn.send(len(sink.received_at))
        elif command == "snapshot":
            # Copies under the GIL: the SMTP thread appends, we only read.
            received = dict(sink.received_at)
            per_ticket = Counter(m.get("X-Spoc-Ticket") for m in list(sink.messages))
            conn.send((received, dict(per_ticket), len(sink.messages)))
        elif command == "stop":
            sink.stop()
            conn.send(None)
            return


class SinkProcess:
    """tests.localstack.MailSink run in a child process, so parsing mail and the SMTP dialogue
    do not compete for the load generator's GIL. Its times are time.monotonic(), which is the
    system-wide CLOCK_MONOTONIC on Linux: comparable with the parent's."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_sink_main, args=(child,), daemon=True)
        self.url = ""

    def start(self) -> None:
        self._process.start()
        if not self._conn.poll(30):
            raise TimeoutError("the mail sink did not start")
        self.url = self._conn.recv()

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    def count(self) -> int:
        self._conn.send("count")
        return int(self._conn.recv())

    def snapshot(self) -> tuple[dict[str, float], dict[str, int], int]:
        """(first receipt time per ticket number, mails per ticket number, all mails)."""
        self._conn.send("snapshot")
        received, per_ticket, total = self._conn.recv()
        return received, per_ticket, total

    def stop(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError, EOFError):
                self._conn.send("stop")
                self._conn.poll(10)
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()


# --- a lean HTTP/1.1 client -----------------------------------------------------------------


class HttpConnection:
    """One kept-alive HTTP/1.1 connection that POSTs JSON and reads a Content-Length answer.

    httpx spends about a millisecond of CPU per request; this spends a tenth of that, and the
    load generator shares two cores with everything it measures."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is not None and self._reader.at_eof():
            # The server closed it while idle (uvicorn's keep-alive timeout is 5 s): reopen
            # before sending, so a POST is never written to a closing connection.
            self.close()
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        reader, writer = await self._open()
        try:
            writer.write(
                b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s"
                % (path.encode(), self.host.encode(), self.port, len(body), body)
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = -1
            close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
                elif name == b"transfer-encoding":
                    raise RuntimeError("chunked answers are not supported by this client")
            if length < 0:
                raise RuntimeError("answer without Content-Length")
            answer = await reader.readexactly(length)
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, answer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class HttpxConnection:
    """The same through httpx (--client httpx), to compare what the client itself costs."""

    def __init__(self, host: str, port: int) -> None:
        self._client = httpx.AsyncClient(
            base_url=f"http://{host}:{port}",
            timeout=60,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        response = await self._client.post(
            path, content=body, headers={"Content-Type": "application/json"}
        )
        return response.status_code, response.content

    def close(self) -> None:
        asyncio.get_running_loop().create_task(self._client.aclose())
