"""AMQP topic semantics of topic_matches, which stands in for RabbitMQ's topic exchange."""

from __future__ import annotations

import pytest

from spoc_platform.bus import topic_matches

pytestmark = pytest.mark.unit

# (binding, routing key, matches?) — the broker suite checks this same table against RabbitMQ,
# so a row here is a fact about the real broker, not only about our implementation.
TOPIC_CASES: list[tuple[str, str, bool]] = [
    # Literal words match only themselves, word by word.
    ("ticket.created", "ticket.created", True),
    ("ticket.created", "ticket.closed", False),
    ("ticket.created", "ticket", False),
    ("ticket.created", "ticket.created.late", False),
    ("ticket", "ticket", True),
    ("ticket", "tickets", False),
    # '*' is exactly one word.
    ("ticket.*", "ticket.created", True),
    ("ticket.*", "ticket", False),
    ("ticket.*", "ticket.created.late", False),
    ("*.created", "ticket.created", True),
    ("*.created", "created", False),
    ("ticket.*.late", "ticket.created.late", True),
    ("ticket.*.late", "ticket.late", False),
    ("*.*", "ticket.created", True),
    ("*.*", "ticket", False),
    ("*", "ticket", True),
    ("*", "ticket.created", False),
    # '#' is zero or more words.
    ("sla.#", "sla", True),
    ("sla.#", "sla.breach", True),
    ("sla.#", "sla.breach.warning", True),
    ("sla.#", "slabreach", False),
    ("sla.#", "ticket.sla", False),
    ("#", "ticket.created", True),
    ("#", "ticket", True),
    ("#.created", "created", True),
    ("#.created", "ticket.created", True),
    ("#.created", "ticket.created.late", False),
    ("ticket.#.late", "ticket.late", True),
    ("ticket.#.late", "ticket.created.very.late", True),
    ("ticket.#.late", "ticket.created.latest", False),
    ("#.breach.#", "sla.breach.warning", True),
    ("#.breach.#", "breach", True),
    ("#.breach.#", "sla.breaches", False),
    ("#.#", "a.b.c", True),
    ("ticket.*.#", "ticket", False),
    ("ticket.*.#", "ticket.created", True),
    ("ticket.*.#", "ticket.created.late.again", True),
    ("*.#", "ticket", True),
    # Wildcards count only as whole words; inside a word they are literal characters.
    ("ticket#", "ticket.created", False),
    ("ticket#", "ticket#", True),
    ("ticket*", "tickets", False),
    ("ticket*", "ticket*", True),
    # Empty words and the empty key: RabbitMQ reads "" as zero words, "a." as "a" and "".
    ("#", "", True),
    ("*", "", False),
    ("*.#", "", False),
    ("#.*", "", False),
    ("", "", True),
    ("", "ticket", False),
    ("ticket.*", "ticket.", True),
    ("ticket", "ticket.", False),
    ("*.*", ".", True),
    ("ticket.*.late", "ticket..late", True),
]


@pytest.fixture(autouse=True)
def _uncached() -> None:
    # topic_matches keeps its answers: an answer kept from an earlier call (another test, or
    # the process mutation testing forks from) would hide what the matcher says now.
    topic_matches.cache_clear()


@pytest.mark.parametrize(
    ("binding", "routing_key", "expected"),
    TOPIC_CASES,
    ids=[f"{b or '<empty>'} ~ {k or '<empty>'}" for b, k, _ in TOPIC_CASES],
)
def test_topic_matches(binding: str, routing_key: str, expected: bool) -> None:
    assert topic_matches(binding, routing_key) is expected
