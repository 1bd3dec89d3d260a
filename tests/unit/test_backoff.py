"""The one back-off every retry follows: pauses grow per failed attempt, stop at a ceiling, and
jitter spreads them only as far as it says."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from spoc_platform.claims import backoff_seconds
from spoc_platform.db import is_outage
from spoc_platform.retry import Backoff, through_outages

pytestmark = pytest.mark.unit


def test_each_failed_attempt_doubles_the_pause_until_the_ceiling() -> None:
    backoff = Backoff(first=0.5, ceiling=5.0)

    assert [backoff.delay(attempts) for attempts in range(1, 8)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        5.0,
        5.0,
        5.0,
    ]


def test_claimed_rows_back_off_the_same_way_up_to_their_ceiling() -> None:
    """The outbox relay's and notify's sends: 0.5 s after the first failure, doubling."""
    assert [backoff_seconds(attempts, 60.0) for attempts in range(1, 5)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff_seconds(20, 60.0) == 60.0


@pytest.mark.parametrize("attempts", [1, 3, 12], ids=["first", "third", "past the ceiling"])
def test_jitter_spreads_the_pause_within_its_bounds_and_no_further(attempts: int) -> None:
    exact = Backoff(first=1.0, ceiling=30.0).delay(attempts)
    jittered = Backoff(first=1.0, ceiling=30.0, jitter=0.2)

    delays = [jittered.delay(attempts) for _ in range(500)]

    assert all(exact * 0.8 <= delay <= exact * 1.2 for delay in delays), (min(delays), max(delays))
    # Spread over the band, not bunched at one end: each outer quarter of it has a chance of 1
    # in 4 per draw, so 500 draws all missing one would happen about once in 10^62 runs.
    assert min(delays) < exact * 0.9 and max(delays) > exact * 1.1


def outage() -> OperationalError:
    return OperationalError("SELECT 1", {}, ConnectionRefusedError(111, "refused"))


QUICK = Backoff(first=0.001, ceiling=0.002)


async def test_an_outage_is_retried_with_back_off_until_it_passes_and_each_wait_is_told() -> None:
    calls = 0
    told: list[tuple[type[BaseException], int]] = []

    async def work() -> str:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise outage()
        return "done"

    result = await through_outages(
        work, backoff=QUICK, on_outage=lambda error, attempts: told.append((type(error), attempts))
    )

    assert (result, calls) == ("done", 4)
    assert told == [(OperationalError, 1), (OperationalError, 2), (OperationalError, 3)]


async def test_an_error_that_is_not_an_outage_goes_straight_to_the_caller() -> None:
    calls = 0
    told: list[int] = []

    async def work() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("this work is wrong")

    with pytest.raises(ValueError, match="this work is wrong"):
        await through_outages(
            work, backoff=QUICK, on_outage=lambda error, attempts: told.append(attempts)
        )
    assert (calls, told) == (1, [])


async def test_with_patience_an_outage_that_outlasts_it_is_raised_without_waiting_past_it() -> None:
    """Pauses of 0.1 s and a patience of 0.25 s: tried at 0, 0.1 and 0.2 s; a third pause would
    end past the patience, so the third failure is raised, at about 0.2 s."""
    calls = 0

    async def work() -> None:
        nonlocal calls
        calls += 1
        raise outage()

    started = time.monotonic()
    with pytest.raises(OperationalError):
        await asyncio.wait_for(
            through_outages(work, backoff=Backoff(first=0.1, ceiling=0.1), patience=0.25), 5
        )
    assert 2 <= calls <= 3, calls
    assert time.monotonic() - started < 0.25 + 0.25  # it never waits a pause past its patience


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (outage(), True),
        (InterfaceError("SELECT 1", {}, Exception("connection is closed")), True),
        (DBAPIError("SELECT 1", {}, Exception("server gone"), connection_invalidated=True), True),
        (ConnectionRefusedError(111, "refused"), True),
        (PoolTimeoutError("QueuePool limit reached"), True),
        (IntegrityError("INSERT", {}, Exception("duplicate key")), False),
        (DBAPIError("SELECT 1", {}, Exception("syntax error")), False),
        (ValueError("bad input"), False),
    ],
    ids=[
        "operational",
        "interface",
        "invalidated-connection",
        "socket",
        "pool-timeout",
        "constraint",
        "bad-statement",
        "bug",
    ],
)
def test_only_an_unreachable_database_counts_as_an_outage(
    error: BaseException, outage: bool
) -> None:
    assert is_outage(error) is outage
