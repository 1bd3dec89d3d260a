"""The one back-off every retry in Spoc follows: consumers, the outbox relay, notify's sends."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_before_delay,
    stop_never,
)

from spoc_platform.db import is_outage

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off from `first` seconds, doubling per attempt up to `ceiling`.

    `jitter` spreads replicas that failed together (a database blip, a broker restart) so they
    do not all come back in the same instant; 0.2 means ±20 %."""

    first: float = 0.5
    ceiling: float = 60.0
    jitter: float = 0.0

    def delay(self, attempts: int) -> float:
        """The pause after `attempts` failed attempts (1 = the first failure)."""
        base = min(self.ceiling, self.first * 2 ** max(0, attempts - 1))
        if self.jitter:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return float(max(0.0, base))


# A handler that failed is tried again soon, then less and less often.
HANDLER_RETRY = Backoff(first=0.1, ceiling=30.0, jitter=0.2)
# An event type this replica has no handler for: during a rolling deploy the replica that can
# handle it runs beside this one, and the broker hands the message on to it once given back.
# The pause only keeps this replica from spinning; it holds one of its prefetch slots, so it is
# kept short (the limit, not the pause, is the patience: about a minute and a half at 10).
UNHANDLED_RETRY = Backoff(first=1.0, ceiling=10.0, jitter=0.2)
# While the database is down, held events are tried at this pace (never given up on).
OUTAGE_RETRY = Backoff(first=0.5, ceiling=10.0, jitter=0.2)


async def through_outages(
    work: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    patience: float | None = None,
    on_outage: Callable[[BaseException, int], None] | None = None,
) -> T:
    """Runs `work` again, with back-off, for as long as it fails because the database is
    unreachable (spoc_platform.db.is_outage) — for ever, or for `patience` seconds; any other
    error goes straight to the caller. `on_outage(error, attempts)` is told before each wait."""

    def tell(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if on_outage is not None and error is not None:
            on_outage(error, state.attempt_number)

    retrying = AsyncRetrying(
        retry=retry_if_exception(is_outage),
        # Spoc's own pauses (doubling, ceiling, jitter), so every retry in Spoc keeps one pace.
        wait=lambda state: backoff.delay(state.attempt_number),
        # Never a pause that would end past the patience: the last failure is raised instead.
        stop=stop_never if patience is None else stop_before_delay(patience),
        before_sleep=tell,
        reraise=True,
    )
    return await retrying(work)
