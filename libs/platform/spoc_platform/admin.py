"""Every service's admin API: its dead letters, to look at, replay or purge, behind a token.

Without a token configured (SPOC_<SVC>_ADMIN_TOKEN) the routes do not exist at all: a desk
that never chose to expose them answers 404, as for any unknown path. Where they exist, a
service that knows intake's bearer tokens (its container's `bearer_tokens`: intake's own table,
or routing's and sla's projection, spoc_platform.token_projection) also takes a live `spoc_`
token of role admin: revoked, expired or unknown tokens, and on routing and sla any token while
intake's feed is over a minute stale, are 401.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol, TypeVar, runtime_checkable

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from spoc_platform import metrics
from spoc_platform.bus import DeadLetter, MessageBus
from spoc_platform.bus.memory import MemoryBus
from spoc_platform.openapi import error_response, error_responses
from spoc_platform.token_projection import TOKEN_PREFIX
from spoc_platform.web import ApiError

T = TypeVar("T")

# How far `show` looks for one id; dead-letter queues are bounded by policy well below this
# in practice, and a look costs one basic.get per message on RabbitMQ.
SHOW_SCAN_LIMIT = 10_000


# Enough to say "many" on a dashboard; the in-process bus prunes dead letters long before.
DEAD_LETTER_COUNT_CAP = 1_000_000


class DeadLetterRead(BaseModel):
    message_id: str | None
    type: str
    ticket_id: str | None
    # The ticket's number when the event carries it (most do): what people search for.
    number: str | None
    reason: str
    attempts: int
    dead_at: datetime | None
    age_seconds: float | None


class DeadLetterDetail(DeadLetterRead):
    envelope: dict[str, Any] | None
    # The raw body when it is not a JSON envelope (a poison message may be anything).
    body: str | None


class DeadLetterList(BaseModel):
    service: str
    count: int
    dead_letters: list[DeadLetterRead]


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Absent: every dead letter of the service.
    ids: list[str] | None = Field(default=None, max_length=SHOW_SCAN_LIMIT)


class PurgeRequest(BaseModel):
    """Purging everything must be said in so many words: `{"all": true}`."""

    model_config = ConfigDict(
        extra="forbid",
        # The rule `_one_of` enforces, said in the schema too: "all": true without ids, or ids.
        json_schema_extra={
            "if": {"properties": {"all": {"const": True}}, "required": ["all"]},
            "then": {"properties": {"ids": {"type": "null"}}},
            "else": {"properties": {"ids": {"type": "array"}}, "required": ["ids"]},
        },
    )

    ids: list[str] | None = Field(default=None, max_length=SHOW_SCAN_LIMIT)
    all: StrictBool = False  # 0 or "yes" is not a way to say "everything"

    @model_validator(mode="after")
    def _one_of(self) -> PurgeRequest:
        if self.all == (self.ids is not None):
            raise ValueError('give either "ids" or "all": true')
        return self


class ReplayResult(BaseModel):
    service: str
    replayed: int


class PurgeResult(BaseModel):
    service: str
    purged: int


def envelope_of(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def describe(letter: DeadLetter, now: datetime | None = None) -> DeadLetterRead:
    envelope = envelope_of(letter.body) or {}
    data = envelope.get("data")
    number = data.get("number") if isinstance(data, dict) else None
    ticket_id = envelope.get("ticket_id")
    now = now or datetime.now(UTC)
    return DeadLetterRead(
        message_id=letter.message_id,
        type=letter.routing_key or str(envelope.get("type") or ""),
        ticket_id=str(ticket_id) if ticket_id else None,
        number=str(number) if number else None,
        reason=letter.reason,
        attempts=letter.attempts,
        dead_at=letter.dead_at,
        age_seconds=(now - letter.dead_at).total_seconds() if letter.dead_at else None,
    )


def detail(letter: DeadLetter, now: datetime | None = None) -> DeadLetterDetail:
    envelope = envelope_of(letter.body)
    return DeadLetterDetail(
        **describe(letter, now).model_dump(),
        envelope=envelope,
        body=None if envelope is not None else letter.body.decode("utf-8", "replace"),
    )


def export_in_process_bus(service: str, bus: MessageBus) -> None:
    """spoc_dead_letters and spoc_queue_messages for the in-process bus, read at each scrape.
    On RabbitMQ the broker exports its queues' depths itself, and counting dead letters by
    basic.get at every scrape would spend a delivery of each one every time: left out there."""
    if not isinstance(bus, MemoryBus):
        return

    async def count() -> None:
        held = await bus.dead_letters(service, limit=DEAD_LETTER_COUNT_CAP)
        metrics.dead_letters.labels(service).set(len(held))
        metrics.queue_messages.labels(service).set(bus.depth(service))

    metrics.dead_letters.labels(service).set(0)
    metrics.queue_messages.labels(service).set(0)
    metrics.refresh_on_scrape(f"{service} in-process bus", count)


def bearer_guard(token: str) -> Callable[[Request], None]:
    expected = token.encode()

    def guard(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # Constant time: how much of a guess matched must not show in how long the answer took.
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise ApiError(
                401,
                "unauthenticated",
                "a valid admin token is required (Authorization: Bearer …)",
                headers={"WWW-Authenticate": 'Bearer realm="spoc-admin"'},
            )

    return guard


# Dead letters carry whole envelopes (requesters' addresses, internal comments) and replay
# and purge change what the desk does next: operators' work, so admin only, as the configured
# token is; a manager's token is refused (403) like an agent's.
ADMIN_ROLES = frozenset({"admin"})


class TokenHolder(Protocol):
    @property
    def role(self) -> str: ...


@runtime_checkable
class TokenHolders(Protocol):
    """Who holds a live `spoc_` token now: routing and sla ask their projection of intake's
    tokens (TokenProjection), intake its own table."""

    async def caller(self, token: str) -> TokenHolder | None: ...


def _bearer_tokens(request: Request) -> TokenHolders | None:
    """The service's token holders, if its composition root keeps them (`bearer_tokens`)."""
    container = getattr(request.app.state, "container", None)
    found = getattr(container, "bearer_tokens", None)
    return found if isinstance(found, TokenHolders) else None


# Who a change made with the configured admin token is recorded as (it names nobody).
CONFIGURED_ADMIN = "admin token"


def admin_guard(token: str) -> Callable[[Request], Awaitable[str]]:
    """The configured admin token, or else a live projected `spoc_` token of an admin. As a
    dependency's value: who called, for the record of what they change (CONFIGURED_ADMIN, or
    the token holder's staff id, else the token's id)."""
    configured = bearer_guard(token)

    async def guard(request: Request) -> str:
        try:
            configured(request)
            return CONFIGURED_ADMIN
        except ApiError:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            given = given.strip()
            projection = _bearer_tokens(request)
            if (
                scheme.lower() != "bearer"
                or projection is None
                or not given.startswith(TOKEN_PREFIX)
            ):
                raise
            holder = await projection.caller(given)
            if holder is None:
                raise
        if holder.role not in ADMIN_ROLES:
            raise ApiError(
                403, "forbidden", f"the admin API is for admins; this token's role is {holder.role}"
            )
        subject = getattr(holder, "subject_id", None)
        return str(subject) if subject else f"token {getattr(holder, 'token_id', '?')}"

    return guard


def admin_router(service: str, bus: MessageBus, token: str) -> APIRouter:
    router = APIRouter(
        prefix="/admin",
        tags=["admin"],
        dependencies=[Depends(admin_guard(token))],
        responses={
            401: error_response(
                401,
                headers={"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
            ),
            403: error_response(403, "A live bearer token whose role may not use the admin API"),
            **error_responses(503),
        },
    )

    @router.get("/dead-letters", summary="The service's dead letters, oldest first")
    async def list_dead_letters(
        limit: Annotated[int, Query(ge=1, le=SHOW_SCAN_LIMIT)] = 100,
    ) -> DeadLetterList:
        letters = await _bus_call(bus.dead_letters(service, limit=limit))
        now = datetime.now(UTC)
        described = [describe(letter, now) for letter in letters]
        return DeadLetterList(service=service, count=len(described), dead_letters=described)

    @router.post(
        "/dead-letters/replay",
        summary="Send dead letters (all, or those ids) back to the service's own queue",
    )
    async def replay_dead_letters(request: ReplayRequest | None = None) -> ReplayResult:
        ids = request.ids if request is not None else None
        replayed = await _bus_call(bus.replay_dead_letters(service, ids))
        return ReplayResult(service=service, replayed=replayed)

    @router.post("/dead-letters/purge", summary='Drop dead letters: those ids, or {"all": true}')
    async def purge_dead_letters(request: PurgeRequest) -> PurgeResult:
        purged = await _bus_call(bus.purge_dead_letters(service, request.ids))
        return PurgeResult(service=service, purged=purged)

    # Last: declared before them, its template would match /replay and /purge too, and a wrong
    # method there would be told "Allow: GET".
    @router.get(
        "/dead-letters/{message_id}",
        summary="One dead letter with its whole envelope",
        responses=error_responses(404),
    )
    async def get_dead_letter(message_id: str) -> DeadLetterDetail:
        letters = await _bus_call(bus.dead_letters(service, limit=SHOW_SCAN_LIMIT))
        for letter in letters:
            if letter.message_id == message_id:
                return detail(letter)
        raise ApiError(404, "not_found", f"no dead letter {message_id} in {service}")

    return router


async def _bus_call(call: Awaitable[T]) -> T:
    try:
        return await call
    except LookupError as error:
        raise ApiError(404, "not_found", str(error)) from error
    except Exception as error:
        # PublishError, a closed channel, a dropped connection (aio-pika's AMQPError family is
        # not an OSError): the caller may try again; a 500 would say the desk is broken.
        raise ApiError(
            503,
            "service_unavailable",
            f"the message bus did not answer: {error!r}",
            headers={"Retry-After": "2"},
        ) from error
