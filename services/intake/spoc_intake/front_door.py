"""The front door's guard against abuse (D19): rate limits per client and per recipient, and a
block list, for whatever an anonymous caller can make the desk do.

Opening a ticket, replying and asking for a sign-in link each make the desk send mail to an
address the caller chose; unguarded, the desk is a relay anyone can point at anyone. Each action
spends from one budget of the client address and one of the recipient address (shared by the
three actions: it is the mail they cause that is limited), counted in sliding windows by the
`limits` library. A staff sign-in sends no mail but costs an argon2 verification: the
`sign_in` action spends from budgets of its own, per client and per account address tried.

The counts live in this process by default, or in a Redis every replica shares
(SPOC_INTAKE_RATE_LIMIT_STORAGE); a Redis that fails lets requests through uncounted (`admit`).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import math
import time
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from sqlalchemy.engine import make_url

from spoc_intake import metrics
from spoc_platform.web import ApiError, client_key

if TYPE_CHECKING:
    from fastapi import Request

    from spoc_intake.settings import IntakeSettings

Action = Literal["create", "reply", "sign_in_link", "sign_in"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = "127.0.0.0/8,::1/128"
# The storages Spoc installs a client for: this process's memory, or Redis through redis-py.
SHARED_SCHEMES = ("redis", "rediss", "redis+unix")
STORAGE_SCHEMES = ("memory", *SHARED_SCHEMES)
# At most one warning this often while the shared storage keeps failing: an outage under load
# would otherwise log once per request.
STORAGE_WARNING_SECONDS = 60.0

log = logging.getLogger(__name__)


def parse_budget(text: str) -> list[RateLimitItem]:
    """ "20/minute;200/hour" as limits; empty: none. A ValueError says what is unreadable."""
    if not text.strip():
        return []
    try:
        return list(parse_many(text))
    except ValueError as error:
        raise ValueError(f"not a rate limit like '20/minute;200/hour': {text!r}") from error


def parse_networks(text: str) -> list[Network]:
    """Comma-separated addresses or networks (CIDR); a ValueError names the unreadable one."""
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError as error:
            raise ValueError(f"not an address or network (CIDR): {part!r}") from error
    return networks


def check_storage_url(url: str) -> None:
    """Refuses a rate-limit storage Spoc cannot use, naming only the scheme: the URL may hold
    a password."""
    scheme = urlsplit(url).scheme.removeprefix("async+")
    if scheme not in STORAGE_SCHEMES:
        raise ValueError(
            f"unknown rate-limit storage {scheme + '://' if scheme else 'URL'}: use memory://, "
            "redis://host:6379/0, rediss://host:6379/0 or redis+unix:///path/to/socket?db=0"
        )
    try:
        urlsplit(url).port  # noqa: B018 - raises on a port that is not a number
    except ValueError as error:
        raise ValueError("the rate-limit storage URL has an unreadable port") from error


def desk_key_prefix(settings: IntakeSettings) -> str:
    """The prefix of this desk's keys in a shared storage: the one set, or one derived from the
    intake database (host, port, name; never the password), which every replica of a desk
    shares and no other desk does."""
    if settings.rate_limit_key_prefix:
        return settings.rate_limit_key_prefix
    url = make_url(settings.database_url)
    where = f"{url.host or ''}:{url.port or ''}/{url.database or ''}"
    return f"spoc-intake:{hashlib.sha256(where.encode()).hexdigest()[:12]}"


def _is_shared(url: str) -> bool:
    return urlsplit(url).scheme.removeprefix("async+") in SHARED_SCHEMES


def _storage(settings: IntakeSettings) -> Storage:
    url = settings.rate_limit_storage.removeprefix("async+")
    if _is_shared(url):
        timeout = settings.rate_limit_storage_timeout
        storage = storage_from_string(
            f"async+{url}",
            implementation="redispy",
            key_prefix=desk_key_prefix(settings),
            # A Redis that accepts connections and never answers holds no request longer.
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
    else:
        storage = storage_from_string(f"async+{url}")
    if not isinstance(storage, Storage):  # pragma: no cover - async+ asks for one
        raise TypeError("the rate limit storage is not an asyncio one")
    return storage


def client_address(request: Request) -> str | None:
    """The client's address as the server saw it. uvicorn puts there the X-Forwarded-For
    address only from the proxies SPOC_FORWARDED_ALLOW_IPS trusts (see spoc.cli), so a
    caller cannot choose its own."""
    return request.client.host if request.client else None


def _ip(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if address is None:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _in(address: str | None, networks: list[Network]) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip in network for network in networks)


class FrontDoor:
    """Admits or refuses what an anonymous caller asks the desk to do. Routes call `admit`
    for callers without a staff or integration credential, after validating the body."""

    def __init__(self, settings: IntakeSettings) -> None:
        self._per_client = parse_budget(settings.rate_limit_per_client)
        self._per_recipient = parse_budget(settings.rate_limit_per_recipient)
        # Staff sign-in sends no mail but costs an argon2 verification: budgets of its own,
        # per client and per account address tried, counted apart from the mail budgets.
        self._sign_in_per_client = parse_budget(settings.sign_in_rate_limit_per_client)
        self._sign_in_per_account = parse_budget(settings.sign_in_rate_limit_per_account)
        trusted = settings.trusted_networks
        by_default = trusted is None and settings.environment == "development"
        self._trusted = parse_networks(LOOPBACK if by_default else trusted or "")
        # In development, by default, also a client without an IP address: a test transport
        # (Starlette's "testclient"), never a remote one.
        self._trusts_unaddressed = by_default
        self._blocked_networks = parse_networks(settings.blocked_networks)
        self._blocked_senders = frozenset(
            entry.strip().lower().lstrip("@")
            for entry in settings.blocked_senders.split(",")
            if entry.strip()
        )
        storage = self._storage = _storage(settings)
        # Only a shared storage can fail or hang; the in-process one is never cut short (a
        # busy event loop must not switch the limits off).
        shared = _is_shared(settings.rate_limit_storage)
        self._storage_timeout = settings.rate_limit_storage_timeout if shared else None
        self._storage_errors: tuple[type[BaseException], ...] = (
            (*_as_tuple(storage.base_exceptions), TimeoutError) if shared else ()
        )
        self._failures_unreported = 0
        self._last_warning = -math.inf
        # Sliding window counters: two counts per key whatever its limit, where a moving window
        # keeps every hit (and its in-memory storage sweeps them with a thread hop per key).
        self._limiter = SlidingWindowCounterRateLimiter(storage)

    def trusts(self, client: str | None) -> bool:
        """Whether the client is on a trusted network (SPOC_INTAKE_TRUSTED_NETWORKS)."""
        if _ip(client) is None:
            return self._trusts_unaddressed
        return _in(client, self._trusted)

    def is_blocked(self, recipient: str | None) -> bool:
        """Whether an e-mail address is on the block list, by itself or by its domain."""
        if not recipient or "@" not in recipient:
            return False
        address = recipient.strip().lower()
        domain = address.rsplit("@", 1)[1]
        labels = domain.split(".")
        domains = {".".join(labels[i:]) for i in range(len(labels))}
        return address in self._blocked_senders or bool(domains & self._blocked_senders)

    async def admit(self, action: Action, *, client: str | None, recipient: str | None) -> bool:
        """Spends one from the client's and the recipient's budgets, or refuses.

        Raises ApiError 403 `blocked` for a blocked client network or requester address
        (`create`, `reply`), and 429 `rate_limited` with Retry-After when a budget is spent.
        Returns False for a `sign_in_link` to a blocked address: the route must then answer
        as always and send nothing, since its answer never tells whether it knows an address.
        Returns True when the action may go ahead, also uncounted when a shared storage fails
        or does not answer within SPOC_INTAKE_RATE_LIMIT_STORAGE_TIMEOUT (fail open)."""
        if _in(client, self._blocked_networks):
            metrics.front_door_refusals.labels(action, "blocked_client").inc()
            raise ApiError(403, "blocked", "requests from this network are not accepted")
        if action != "sign_in" and self.is_blocked(recipient):
            metrics.front_door_refusals.labels(action, "blocked_recipient").inc()
            if action == "sign_in_link":
                return False
            raise ApiError(
                403,
                "blocked",
                "the desk does not accept requests for this address",
                [{"field": "requester.email", "message": "blocked", "type": "blocked"}],
            )
        if self.trusts(client):
            return True
        try:
            async with asyncio.timeout(self._storage_timeout):
                await self._spend(action, client, recipient)
        except self._storage_errors as error:
            # Fail open: a desk's front door keeps taking tickets while Redis is down or slow.
            # The limits guard against abuse; refusing every requester instead would be the
            # outage an abuser could only hope to cause. The metric and the log say it.
            self._storage_failed(error)
        return True

    async def _spend(self, action: Action, client: str | None, recipient: str | None) -> None:
        per_client, per_recipient = self._per_client, self._per_recipient
        # The limiter's namespace: sign-in counts apart from the mail the other actions send.
        namespace = ""
        if action == "sign_in":
            per_client, per_recipient = self._sign_in_per_client, self._sign_in_per_account
            namespace = "sign_in:"
        buckets = [("client", client_key(client), limit) for limit in per_client]
        if recipient:
            key = recipient.strip().lower()
            buckets += [("recipient", key, limit) for limit in per_recipient]
        # Test every budget before spending any: a refused request costs the others nothing.
        for scope, key, limit in buckets:
            if not await self._limiter.test(limit, namespace + scope, key):
                await self._refuse(action, scope, key, limit, namespace)
        for scope, key, limit in buckets:
            if not await self._limiter.hit(limit, namespace + scope, key):
                # Spent by a concurrent request between the test and the hit.
                await self._refuse(action, scope, key, limit, namespace)

    def _storage_failed(self, error: BaseException) -> None:
        metrics.rate_limit_storage_errors.inc()
        self._failures_unreported += 1
        now = time.monotonic()
        if now - self._last_warning < STORAGE_WARNING_SECONDS:
            return
        log.warning(
            "rate-limit storage failed (%s: %s): %d anonymous request(s) admitted uncounted "
            "since the last warning; at most one warning per %.0f s",
            type(error).__name__,
            error,
            self._failures_unreported,
            STORAGE_WARNING_SECONDS,
        )
        self._failures_unreported = 0
        self._last_warning = now

    async def aclose(self) -> None:
        """Closes the shared storage's connections (nothing to do for the in-process one)."""
        bridge = getattr(self._storage, "bridge", None)
        if bridge is not None:
            await bridge.get_connection().aclose()

    async def _refuse(
        self, action: Action, scope: str, key: str, limit: RateLimitItem, namespace: str = ""
    ) -> None:
        metrics.front_door_refusals.labels(action, scope).inc()
        stats = await self._limiter.get_window_stats(limit, namespace + scope, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests for this {'address' if scope == 'recipient' else 'client'}: "
            f"try again in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


def _as_tuple(
    errors: type[BaseException] | tuple[type[BaseException], ...],
) -> tuple[type[BaseException], ...]:
    return errors if isinstance(errors, tuple) else (errors,)
