"""Prometheus series every service exports, labelled by service so one process can host many."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

log = logging.getLogger(__name__)

# Every counter and histogram would also export a `_created` series holding its creation time:
# twice the series for nothing a rule or panel reads.
disable_created_metrics()  # type: ignore[no-untyped-call]

PUBLISH_OUTCOMES = ("ok", "failed", "unroutable", "unsubscribed")
CONSUME_OUTCOMES = ("ok", "duplicate", "retry", "dead", "unhandled")

events_published = Counter(
    "spoc_events_published_total",
    "Events handed to the broker by the outbox relay, by outcome of the attempt.",
    ["service", "type", "outcome"],
)
events_consumed = Counter(
    "spoc_events_consumed_total",
    "Deliveries handled by a service's consumer, by outcome.",
    ["service", "type", "outcome"],
)
handler_duration = Histogram(
    "spoc_event_handler_duration_seconds",
    "Time from delivery to commit of a handler's transaction.",
    ["service", "type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
outbox_pending = Gauge(
    "spoc_outbox_pending", "Outbox rows committed but not yet confirmed by the broker.", ["service"]
)
outbox_oldest_age = Gauge(
    "spoc_outbox_oldest_pending_age_seconds",
    "Age of the oldest unpublished outbox row (0 when none).",
    ["service"],
)
bus_connected = Gauge("spoc_bus_connected", "1 while the bus connection is healthy.", ["service"])
consumer_paused = Gauge(
    "spoc_consumer_paused",
    "1 while a service holds its events because its database is unreachable.",
    ["service"],
)
dead_letters = Gauge(
    "spoc_dead_letters",
    "Dead letters held for the service by the in-process bus (embedded default). On RabbitMQ "
    "the broker's own per-queue depth of <service>.dead says it.",
    ["service"],
)
queue_messages = Gauge(
    "spoc_queue_messages",
    "Events waiting in or being handled from the service's queue of the in-process bus "
    "(embedded default). On RabbitMQ the broker's per-queue metrics say it.",
    ["service"],
)
token_feed_behind = Gauge(
    "spoc_token_feed_behind",
    "1 while routing or sla honours none of intake's bearer tokens: the token feed is stale or "
    "out of step with intake's tokens (spoc_platform.token_projection).",
    ["service"],
)
http_requests = Counter(
    "spoc_http_requests_total", "HTTP requests served.", ["service", "method", "route", "status"]
)
http_errors = Counter(
    "spoc_http_request_errors_total",
    "HTTP requests answered with an error, client (4xx) or server (5xx).",
    ["service", "method", "route", "kind"],
)
http_duration = Histogram(
    "spoc_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


def initialise_event_series(
    service: str, *, publishes: Iterable[str], consumes: Iterable[str]
) -> None:
    """Create every series at zero so dashboards and alerts see them before traffic."""
    for event_type in publishes:
        for outcome in PUBLISH_OUTCOMES:
            events_published.labels(service, event_type, outcome)
    for event_type in consumes:
        for outcome in CONSUME_OUTCOMES:
            events_consumed.labels(service, event_type, outcome)
        handler_duration.labels(service, event_type)
    outbox_pending.labels(service).set(0)
    outbox_oldest_age.labels(service).set(0)
    bus_connected.labels(service).set(0)
    consumer_paused.labels(service).set(0)


def initialise_http_series(service: str, routes: Iterable[tuple[str, str]]) -> None:
    for method, route in routes:
        http_duration.labels(service, method, route)
        for kind in ("client", "server"):
            http_errors.labels(service, method, route, kind)


GaugeRefresh = Callable[[], Awaitable[None]]
_refreshers: dict[str, GaugeRefresh] = {}
REFRESH_TIMEOUT = 2.0


def refresh_on_scrape(name: str, refresh: GaugeRefresh) -> None:
    """Runs `refresh` before each /metrics answer, for gauges that are cheaper to read when
    asked than to keep current. One per name: a later registration replaces the earlier."""
    _refreshers[name] = refresh


async def refresh_gauges() -> None:
    for name, refresh in list(_refreshers.items()):
        try:
            await asyncio.wait_for(refresh(), REFRESH_TIMEOUT)
        except Exception:  # a scrape answers with what it has
            log.warning("could not refresh %s before a scrape", name, exc_info=True)
