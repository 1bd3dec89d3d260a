"""The transport's own pause before a failed message comes back (both buses use it)."""

from __future__ import annotations

import pytest

from spoc_platform.bus.port import retry_delay

pytestmark = pytest.mark.unit


def test_a_failed_message_waits_50_ms_first_then_twice_as_long_each_time() -> None:
    # delivery_count is how many times the message was handed out before this failure.
    assert [retry_delay(count, 10.0) for count in range(7)] == [
        0.05,
        0.1,
        0.2,
        0.4,
        0.8,
        1.6,
        3.2,
    ]


def test_the_pause_never_exceeds_the_queue_s_ceiling() -> None:
    assert [retry_delay(count, 2.0) for count in (5, 6, 7, 30)] == [1.6, 2.0, 2.0, 2.0]
    assert retry_delay(0, 0.01) == 0.01  # a ceiling below the first pause is the pause
