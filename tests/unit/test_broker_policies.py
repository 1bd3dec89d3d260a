"""The broker policies Spoc puts, and where it finds the management API to put them."""

from __future__ import annotations

import pytest

from spoc_platform.bus import QueueSpec
from spoc_platform.bus.amqp_policies import DeadLetterBounds, ManagementApi

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("amqp_url", "management_url", "expected"),
    [
        # Beside the broker, with the AMQP URL's (percent-encoded) credentials and vhost.
        (
            "amqp://desk:s%40cret@rabbit.internal:5672/spoc%2Fprod?heartbeat=10",
            None,
            ("http://rabbit.internal:15672", "spoc/prod", "desk", "s@cret"),
        ),
        # No vhost in the URL, or only its slash: the default vhost "/".
        ("amqp://rabbit.internal", None, ("http://rabbit.internal:15672", "/", "guest", "guest")),
        ("amqp://rabbit.internal/", None, ("http://rabbit.internal:15672", "/", "guest", "guest")),
        # A vhost of one character is still a vhost.
        ("amqp://rabbit.internal/x", None, ("http://rabbit.internal:15672", "x", "guest", "guest")),
        # No host: the local broker.
        ("amqp:///desk", None, ("http://127.0.0.1:15672", "desk", "guest", "guest")),
        # A management URL of its own, given with or without "/api" and a trailing slash; its
        # credentials win over the AMQP URL's.
        (
            "amqp://desk:amqp-pw@rabbit.internal/desk",
            "https://admin:p%3Aw@mgmt.internal:443/api/",
            ("https://admin:p%3Aw@mgmt.internal:443", "desk", "admin", "p:w"),
        ),
        (
            "amqp://desk:amqp-pw@rabbit.internal/desk",
            "http://mgmt.internal:15672/",
            ("http://mgmt.internal:15672", "desk", "desk", "amqp-pw"),
        ),
        ("amqp://rabbit.internal/desk", "http://BOX", ("http://BOX", "desk", "guest", "guest")),
    ],
)
def test_the_management_api_is_found_beside_the_broker_with_its_credentials_and_vhost(
    amqp_url: str, management_url: str | None, expected: tuple[str, str, str, str]
) -> None:
    api = ManagementApi.for_amqp_url(amqp_url, management_url)

    assert (api.base_url, api.vhost, api.username, api.password) == expected
    assert api.dead_letters == DeadLetterBounds()


def test_dead_letter_bounds_given_for_the_broker_are_kept() -> None:
    bounds = DeadLetterBounds(max_length=50, ttl_days=0.5)

    api = ManagementApi.for_amqp_url("amqp://rabbit.internal/desk", dead_letters=bounds)

    assert api.dead_letters == bounds


def test_each_service_gets_a_backstop_policy_and_a_bounded_dead_letter_policy() -> None:
    api = ManagementApi(
        "http://rabbit.internal:15672",
        "desk",
        "guest",
        "guest",
        dead_letters=DeadLetterBounds(max_length=500, ttl_days=1.5),
    )
    specs = [
        QueueSpec("routing", ("ticket.created",), delivery_limit=4),
        QueueSpec("sla", ("ticket.*",)),
    ]

    assert api.policies(specs) == {
        "spoc-routing-events": {
            "pattern": r"^routing\.events$",
            "apply-to": "queues",
            "priority": 10,
            "definition": {"delivery-limit": 20},
        },
        "spoc-routing-dead": {
            "pattern": r"^routing\.dead$",
            "apply-to": "queues",
            "priority": 10,
            "definition": {
                "delivery-limit": 1_000_000,
                "max-length": 500,
                "message-ttl": 129_600_000,  # a day and a half, in milliseconds
            },
        },
        "spoc-sla-events": {
            "pattern": r"^sla\.events$",
            "apply-to": "queues",
            "priority": 10,
            "definition": {"delivery-limit": 50},
        },
        "spoc-sla-dead": {
            "pattern": r"^sla\.dead$",
            "apply-to": "queues",
            "priority": 10,
            "definition": {
                "delivery-limit": 1_000_000,
                "max-length": 500,
                "message-ttl": 129_600_000,
            },
        },
    }


def test_by_default_dead_letters_are_kept_two_weeks_and_at_most_a_hundred_thousand() -> None:
    api = ManagementApi.for_amqp_url("amqp://rabbit.internal/desk")

    dead = api.policies([QueueSpec("notify", ("ticket.created",))])["spoc-notify-dead"]

    assert dead["definition"] == {
        "delivery-limit": 1_000_000,
        "max-length": 100_000,
        "message-ttl": 14 * 24 * 3600 * 1000,
    }
