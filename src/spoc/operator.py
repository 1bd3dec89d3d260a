"""Operator commands: `spoc dead-letters …` to work dead letters, `spoc status` for a glance.

Dead letters are reached on the broker directly (SPOC_AMQP_URL) when the services run as
processes on RabbitMQ, or through the admin API of a running `spoc up` (`--embedded`/`--url`),
whose bus lives inside that process.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

import httpx
import typer

from spoc.services import ServiceName

T = TypeVar("T")

EMBEDDED_URL = "http://127.0.0.1:8000"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
# Services run separately listen on these by default (README, "Running the services separately").
DEFAULT_PORTS = {"intake": 8000, "routing": 8001, "sla": 8002, "notify": 8003}

dead_letters = typer.Typer(
    help="Dead letters: events a service gave up on. List, show, replay or purge them.",
    no_args_is_help=True,
)

ServiceArg = Annotated[ServiceName, typer.Argument(help="Whose dead letters.")]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Address of a running `spoc up`: use its admin API instead of the broker.",
        envvar="SPOC_URL",
    ),
]
EmbeddedOption = Annotated[
    bool, typer.Option("--embedded", help=f"The same as --url {EMBEDDED_URL}.")
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Admin token of the embedded desk (SPOC_<SVC>_ADMIN_TOKEN it was started with).",
        envvar="SPOC_ADMIN_TOKEN",
    ),
]
AmqpOption = Annotated[
    str | None,
    typer.Option("--amqp-url", help="The broker (default: SPOC_AMQP_URL).", envvar="SPOC_AMQP_URL"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON instead of a table.")]


class OperatorError(Exception):
    """Something the operator must hear about in one line, with a non-zero exit."""


# ------------------------------------------------------------------------------------------------
# Where the dead letters are: the broker, or the embedded desk's admin API
# ------------------------------------------------------------------------------------------------


@dataclass
class AdminApi:
    base_url: str
    token: str | None

    def path(self, service: ServiceName, rest: str) -> str:
        # The embedded desk serves intake at the root and the others under their names.
        prefix = "" if service is ServiceName.intake else f"/{service.value}"
        return f"{self.base_url.rstrip('/')}{prefix}/admin/dead-letters{rest}"

    async def call(self, method: str, service: ServiceName, rest: str = "", **kwargs: Any) -> Any:
        if not self.token:
            raise OperatorError("the admin API needs a token: --token or SPOC_ADMIN_TOKEN")
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with httpx.AsyncClient(timeout=30) as http:
                answer = await http.request(
                    method, self.path(service, rest), headers=headers, **kwargs
                )
        except httpx.HTTPError as error:
            raise OperatorError(f"{self.base_url} did not answer: {error}") from error
        # An unknown path (the API is off without a token) or a refused token.
        if answer.status_code == 401 or (
            answer.status_code == 404 and _error_text(answer) == "Not Found"
        ):
            raise OperatorError(
                f"{service.value}: the admin API refused ({answer.status_code}); is the desk "
                f"running with SPOC_{service.value.upper()}_ADMIN_TOKEN set to this token?"
            )
        if answer.status_code >= 400:
            raise OperatorError(f"{service.value}: {answer.status_code} {_error_text(answer)}")
        return answer.json()


def _error_text(answer: httpx.Response) -> str:
    try:
        return str(answer.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return answer.text[:200]


async def _with_broker(amqp_url: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
    import aio_pika
    from aio_pika.exceptions import AMQPError

    from spoc_platform.bus.amqp_dead_letters import DeadLetterQueueMissing

    url = amqp_url or DEFAULT_AMQP_URL
    try:
        connection = await asyncio.wait_for(aio_pika.connect_robust(url), 15)
    except (OSError, AMQPError, TimeoutError) as error:
        raise OperatorError(f"RabbitMQ at {_without_password(url)} refused: {error!r}") from error
    try:
        return await work(connection)
    except DeadLetterQueueMissing as error:
        raise OperatorError(str(error)) from error
    finally:
        await connection.close()


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def _admin(url: str | None, embedded: bool, token: str | None) -> AdminApi | None:
    if url is None and not embedded:
        return None
    return AdminApi(url or EMBEDDED_URL, token)


def _run(coroutine: Awaitable[T]) -> T:
    async def wrapped() -> T:
        return await coroutine

    try:
        return asyncio.run(wrapped())
    except OperatorError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error


# ------------------------------------------------------------------------------------------------
# spoc dead-letters …
# ------------------------------------------------------------------------------------------------


async def _list(
    service: ServiceName, limit: int, admin: AdminApi | None, amqp_url: str | None
) -> list[dict[str, Any]]:
    if admin is not None:
        answer = await admin.call("GET", service, params={"limit": limit})
        return list(answer["dead_letters"])
    from spoc_platform.admin import describe
    from spoc_platform.bus.amqp_dead_letters import list_dead_letters

    async def work(connection: Any) -> list[dict[str, Any]]:
        letters = await list_dead_letters(connection, service.value, limit)
        return [describe(letter).model_dump(mode="json") for letter in letters]

    return await _with_broker(amqp_url, work)


@dead_letters.command("list")
def list_command(
    service: ServiceArg,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    url: UrlOption = None,
    embedded: EmbeddedOption = False,
    token: TokenOption = None,
    amqp_url: AmqpOption = None,
    as_json: JsonOption = False,
) -> None:
    """The oldest dead letters of a service: type, ticket, reason, attempts and age."""
    letters = _run(_list(service, limit, _admin(url, embedded, token), amqp_url))
    if as_json:
        typer.echo(json.dumps(letters, indent=2))
        return
    if not letters:
        typer.echo(f"{service.value}: no dead letters")
        return
    rows = [
        [
            str(d["message_id"] or "-"),
            d["type"] or "-",
            d.get("number") or d.get("ticket_id") or "-",
            str(d["attempts"]),
            _age(d.get("age_seconds")),
            _one_line(d["reason"], 60),
        ]
        for d in letters
    ]
    typer.echo(_table(["ID", "TYPE", "TICKET", "ATTEMPTS", "AGE", "REASON"], rows))
    typer.echo(f"{len(letters)} dead letter(s) in {service.value}" + _more(len(letters), limit))


@dead_letters.command("show")
def show_command(
    service: ServiceArg,
    message_id: Annotated[str, typer.Argument(help="The dead letter's id (from `list`).")],
    url: UrlOption = None,
    embedded: EmbeddedOption = False,
    token: TokenOption = None,
    amqp_url: AmqpOption = None,
    as_json: JsonOption = False,
) -> None:
    """One dead letter in full: why it died and the whole event."""

    async def find() -> dict[str, Any]:
        admin = _admin(url, embedded, token)
        if admin is not None:
            found = await admin.call("GET", service, f"/{quote(message_id, safe='')}")
            return dict(found)
        from spoc_platform.admin import SHOW_SCAN_LIMIT, detail
        from spoc_platform.bus.amqp_dead_letters import list_dead_letters

        async def work(connection: Any) -> dict[str, Any]:
            for letter in await list_dead_letters(connection, service.value, SHOW_SCAN_LIMIT):
                if letter.message_id == message_id:
                    return dict(detail(letter).model_dump(mode="json"))
            raise OperatorError(f"no dead letter {message_id} in {service.value}")

        return await _with_broker(amqp_url, work)

    letter = _run(find())
    if as_json:
        typer.echo(json.dumps(letter, indent=2))
        return
    for key in ("message_id", "type", "ticket_id", "number", "reason", "attempts", "dead_at"):
        typer.echo(f"{key + ':':<12} {letter.get(key)}")
    typer.echo(f"{'age:':<12} {_age(letter.get('age_seconds'))}")
    if letter.get("envelope") is not None:
        typer.echo(json.dumps(letter["envelope"], indent=2))
    else:
        typer.echo(f"body (not an event envelope):\n{letter.get('body')}")


IdsArg = Annotated[
    list[str] | None, typer.Argument(help="Dead letter ids (from `list`); or --all.")
]
AllOption = Annotated[bool, typer.Option("--all", help="Every dead letter of the service.")]


def _chosen(ids: list[str] | None, everything: bool, verb: str) -> list[str] | None:
    # Both verbs want it said: replaying everything re-runs every failure at once, purging
    # everything loses them for good.
    if bool(ids) == everything:
        typer.echo(f"error: name the dead letters to {verb}, or give --all (not both)", err=True)
        raise typer.Exit(2)
    return None if everything else list(ids or [])


@dead_letters.command("replay")
def replay_command(
    service: ServiceArg,
    ids: IdsArg = None,
    everything: AllOption = False,
    url: UrlOption = None,
    embedded: EmbeddedOption = False,
    token: TokenOption = None,
    amqp_url: AmqpOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send dead letters back to the service's own queue, and only there.

    Safe to repeat: what was handled already is acknowledged without effect, and a replayed
    letter is no longer dead."""
    from spoc.progress import Steps, progress

    chosen = _chosen(ids, everything, "replay")

    async def replay(steps: Steps) -> int:
        admin = _admin(url, embedded, token)
        if admin is not None:
            # The embedded bus moves them all in one step: the bar fills at once.
            answer = await admin.call("POST", service, "/replay", json={"ids": chosen})
            steps.total(int(answer["replayed"]))
            steps.advance(int(answer["replayed"]))
            return int(answer["replayed"])
        from spoc_platform.bus.amqp_dead_letters import replay_dead_letters

        # On RabbitMQ each letter waits for its publisher confirm: thousands take a while.
        return await _with_broker(
            amqp_url,
            lambda connection: replay_dead_letters(
                connection,
                service.value,
                chosen,
                on_total=steps.total,
                on_replayed=lambda message_id: steps.advance(note=message_id),
            ),
        )

    with progress(f"{service.value}: replaying dead letters", total=_count(chosen)) as steps:
        count = _run(replay(steps))
    _report(as_json, {"service": service.value, "replayed": count}, f"replayed {count}")


@dead_letters.command("purge")
def purge_command(
    service: ServiceArg,
    ids: IdsArg = None,
    everything: AllOption = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before purging all.")] = False,
    url: UrlOption = None,
    embedded: EmbeddedOption = False,
    token: TokenOption = None,
    amqp_url: AmqpOption = None,
    as_json: JsonOption = False,
) -> None:
    """Drop dead letters for good: the ids named, or --all."""
    chosen = _chosen(ids, everything, "purge")
    if chosen is None and not yes:
        typer.confirm(f"Drop every dead letter of {service.value} for good?", abort=True)

    async def purge() -> int:
        admin = _admin(url, embedded, token)
        if admin is not None:
            body: dict[str, Any] = {"all": True} if chosen is None else {"ids": chosen}
            answer = await admin.call("POST", service, "/purge", json=body)
            return int(answer["purged"])
        from spoc_platform.bus.amqp_dead_letters import purge_dead_letters

        return await _with_broker(
            amqp_url, lambda connection: purge_dead_letters(connection, service.value, chosen)
        )

    count = _run(purge())
    _report(as_json, {"service": service.value, "purged": count}, f"purged {count}")


def _count(chosen: list[str] | None) -> int | None:
    return None if chosen is None else len(chosen)


def _report(as_json: bool, result: dict[str, Any], text: str) -> None:
    typer.echo(json.dumps(result) if as_json else f"{result['service']}: {text}")


def _more(shown: int, limit: int) -> str:
    return f" (the oldest {limit}; there may be more: --limit)" if shown >= limit else ""


# ------------------------------------------------------------------------------------------------
# spoc status
# ------------------------------------------------------------------------------------------------


@dataclass
class ServiceStatus:
    service: str
    ready: bool | None = None
    checks: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    queue_ready: int | None = None
    queue_unacked: int | None = None
    consumers: int | None = None
    outbox_pending: float | None = None
    outbox_oldest: float | None = None
    dead: float | None = None
    paused: bool | None = None
    overdue: float | None = None

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
    return values


def _metric(
    values: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    """The sum over every series of `name` carrying `labels` (None if there is none)."""
    wanted = set(labels.items())
    found = [v for (n, ls), v in values.items() if n == name and wanted <= ls]
    return sum(found) if found else None


async def _fetch(
    http: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> httpx.Response | str:
    try:
        return await http.get(url, headers=headers)
    except httpx.HTTPError as error:
        return f"unreachable ({type(error).__name__})"


async def collect_status(
    urls: dict[str, str],
    *,
    embedded: bool,
    rabbitmq_api: str | None,
    vhost: str,
    token: str | None = None,
) -> list[ServiceStatus]:
    statuses = {name: ServiceStatus(name) for name in urls}
    # /metrics takes the metrics or admin token once the services have one (spoc_platform.access).
    auth = {"Authorization": f"Bearer {token}"} if token else None
    async with httpx.AsyncClient(timeout=5) as http:
        metrics_text: dict[str, str] = {}
        for name, base in urls.items():
            status = statuses[name]
            answer = await _fetch(http, f"{base}/readyz")
            if isinstance(answer, str):
                status.ready, status.problem = False, answer
            else:
                status.ready = answer.status_code == 200
                try:
                    status.checks = dict(answer.json().get("checks", {}))
                except ValueError:
                    status.problem = f"/readyz answered {answer.status_code}"
            # In the embedded default one process exports every service's series at the root.
            source = urls["intake"] if embedded and "intake" in urls else base
            if source not in metrics_text:
                scraped = await _fetch(http, f"{source}/metrics", auth)
                code = scraped.status_code if isinstance(scraped, httpx.Response) else None
                if code == 401 and not status.problem:
                    status.problem = "/metrics wants a token: --token or SPOC_ADMIN_TOKEN"
                ok = isinstance(scraped, httpx.Response) and code == 200
                metrics_text[source] = (
                    scraped.text if isinstance(scraped, httpx.Response) and ok else ""
                )
            values = parse_metrics(metrics_text[source])
            status.outbox_pending = _metric(values, "spoc_outbox_pending", service=name)
            status.outbox_oldest = _metric(
                values, "spoc_outbox_oldest_pending_age_seconds", service=name
            )
            status.dead = _metric(values, "spoc_dead_letters", service=name)
            status.queue_ready = _int(_metric(values, "spoc_queue_messages", service=name))
            paused = _metric(values, "spoc_consumer_paused", service=name)
            status.paused = None if paused is None else paused > 0
            if name == "sla":
                status.overdue = _metric(values, "spoc_sla_clocks_overdue")
        if rabbitmq_api:
            await _broker_view(http, rabbitmq_api, vhost, statuses)
    return list(statuses.values())


async def _broker_view(
    http: httpx.AsyncClient, api: str, vhost: str, statuses: dict[str, ServiceStatus]
) -> None:
    parts = urlsplit(api)
    auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
    host = parts.hostname or "127.0.0.1"
    base = parts._replace(netloc=host + (f":{parts.port}" if parts.port else ""))
    root = base.geturl().rstrip("/")
    root = root if root.endswith("/api") else f"{root}/api"
    try:
        answer = await http.get(f"{root}/queues/{quote(vhost, safe='')}", auth=auth)
        answer.raise_for_status()
    except httpx.HTTPError as error:
        for status in statuses.values():
            status.problem = status.problem or f"RabbitMQ API: {error}"
        return
    queues = {q["name"]: q for q in answer.json()}
    for name, status in statuses.items():
        events = queues.get(f"{name}.events")
        if events is not None:
            status.queue_ready = int(events.get("messages_ready", 0))
            status.queue_unacked = int(events.get("messages_unacknowledged", 0))
            status.consumers = int(events.get("consumers", 0))
        dead = queues.get(f"{name}.dead")
        if dead is not None:
            status.dead = float(dead.get("messages", 0))


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def status_command(
    embedded: Annotated[
        bool, typer.Option("--embedded", help=f"The embedded default at {EMBEDDED_URL}.")
    ] = False,
    url: Annotated[
        str | None,
        typer.Option("--url", help="Address of a running `spoc up` (the embedded default)."),
    ] = None,
    intake_url: Annotated[str | None, typer.Option(envvar="SPOC_STATUS_INTAKE_URL")] = None,
    routing_url: Annotated[str | None, typer.Option(envvar="SPOC_STATUS_ROUTING_URL")] = None,
    sla_url: Annotated[str | None, typer.Option(envvar="SPOC_STATUS_SLA_URL")] = None,
    notify_url: Annotated[str | None, typer.Option(envvar="SPOC_STATUS_NOTIFY_URL")] = None,
    rabbitmq_api: Annotated[
        str | None,
        typer.Option(
            help="RabbitMQ management API, e.g. http://user:pass@host:15672 (queue depth and "
            "consumers).",
            envvar="SPOC_RABBITMQ_MANAGEMENT_URL",
        ),
    ] = None,
    vhost: Annotated[
        str | None, typer.Option(help="Spoc's vhost (default: the one in SPOC_AMQP_URL).")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="Metrics or admin token the services were started with, to read /metrics.",
            envvar="SPOC_ADMIN_TOKEN",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Each service at a glance: readiness, queue, consumers, outbox, dead letters, overdue.

    What the dashboard shows, from the services' /readyz and /metrics (and RabbitMQ's management
    API when given). Exits 1 when a service is not ready."""
    is_embedded = embedded or url is not None
    if is_embedded:
        base = (url or EMBEDDED_URL).rstrip("/")
        urls = {
            s.value: base if s is ServiceName.intake else f"{base}/{s.value}" for s in ServiceName
        }
    else:
        given = {"intake": intake_url, "routing": routing_url, "sla": sla_url, "notify": notify_url}
        urls = {
            name: (given[name] or f"http://127.0.0.1:{port}").rstrip("/")
            for name, port in DEFAULT_PORTS.items()
        }
    statuses = _run(
        collect_status(
            urls,
            embedded=is_embedded,
            rabbitmq_api=rabbitmq_api,
            vhost=vhost or _vhost_of(os.environ.get("SPOC_AMQP_URL", DEFAULT_AMQP_URL)),
            token=token,
        )
    )
    if as_json:
        typer.echo(json.dumps([s.as_json() for s in statuses], indent=2))
    else:
        typer.echo(render_status(statuses, embedded=is_embedded))
    if not all(s.ready for s in statuses):
        raise typer.Exit(1)


def _vhost_of(amqp_url: str) -> str:
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def render_status(statuses: Sequence[ServiceStatus], *, embedded: bool) -> str:
    rows = []
    notes = []
    for s in statuses:
        ready = "ready" if s.ready else "NOT READY"
        if s.paused:
            ready += " (paused)"
        queue = "-" if s.queue_ready is None else str(s.queue_ready)
        if s.queue_unacked:
            queue += f" (+{s.queue_unacked} in flight)"
        consumers = "in-process" if embedded and s.consumers is None else _or_dash(s.consumers)
        rows.append(
            [
                s.service,
                ready,
                queue,
                consumers,
                _or_dash(_int(s.outbox_pending)),
                _age(s.outbox_oldest),
                _or_dash(_int(s.dead)),
                _or_dash(_int(s.overdue)) if s.service == "sla" else "",
            ]
        )
        troubles = [f"{k}: {v}" for k, v in s.checks.items() if v != "ok"]
        if s.problem:
            troubles.insert(0, s.problem)
        if troubles:
            notes.append(f"  {s.service}: " + "; ".join(troubles))
    table = _table(
        ["SERVICE", "READINESS", "QUEUE", "CONSUMERS", "OUTBOX", "OLDEST", "DEAD", "OVERDUE"],
        rows,
    )
    return table + ("\n" + "\n".join(notes) if notes else "")


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


# ------------------------------------------------------------------------------------------------
# plain-text tables
# ------------------------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(header), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = max(0, int(seconds))
    if whole >= 86_400:
        return f"{whole // 86_400}d{whole % 86_400 // 3_600}h"
    if whole >= 3_600:
        return f"{whole // 3_600}h{whole % 3_600 // 60}m"
    if whole >= 60:
        return f"{whole // 60}m{whole % 60}s"
    return f"{whole}s"


def _one_line(text: str, width: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"
