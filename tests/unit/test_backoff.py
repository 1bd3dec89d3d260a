"""The one back-off every retry follows: pauses grow per failed attempt, stop at a ceiling, and
jitter spreads them only as far as it says."""

from __future__ import annotations

import pytest

from spoc_platform.claims import backoff_seconds
from spoc_platform.retry import Backoff

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
