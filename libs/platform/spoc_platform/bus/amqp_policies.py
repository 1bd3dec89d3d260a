"""Broker policies for the limits that may change between releases (RabbitMQ management API).

A queue's arguments are fixed when it is created; a policy can be changed at any time and
applies to queues that exist already. So the broker's delivery limit (the backstop under the
consumer's own count) and the dead-letter queues' bounds live here, not in queue arguments."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

from spoc_platform.bus.port import QueueSpec

log = logging.getLogger(__name__)

# Above any policy an operator might add for everything (priority 0), below deliberate ones.
POLICY_PRIORITY = 10
# Effectively unlimited on every version (3.x refuses -1, 4.x reads it as "no limit").
DEAD_QUEUE_DELIVERY_LIMIT = 1_000_000


@dataclass(frozen=True)
class DeadLetterBounds:
    """How much a dead-letter queue may hold: dead letters are for people to look at, and an
    unbounded queue would end in a broker disk alarm that stops the whole desk."""

    max_length: int = 100_000
    ttl_days: float = 14.0


@dataclass(frozen=True)
class ManagementApi:
    base_url: str
    vhost: str
    username: str
    password: str
    dead_letters: DeadLetterBounds = DeadLetterBounds()
    timeout: float = 5.0

    @classmethod
    def for_amqp_url(
        cls,
        amqp_url: str,
        management_url: str | None = None,
        dead_letters: DeadLetterBounds | None = None,
    ) -> ManagementApi:
        """The management API beside the broker (port 15672 unless told otherwise), with the
        AMQP URL's credentials and virtual host."""
        amqp = urlsplit(amqp_url)
        vhost = unquote(amqp.path[1:]) if len(amqp.path) > 1 else "/"
        base = management_url or f"http://{amqp.hostname or '127.0.0.1'}:15672"
        management = urlsplit(base)
        return cls(
            base_url=base.rstrip("/").removesuffix("/api"),
            vhost=vhost,
            username=unquote(management.username or amqp.username or "guest"),
            password=unquote(management.password or amqp.password or "guest"),
            dead_letters=dead_letters or DeadLetterBounds(),
        )

    def policies(self, specs: Sequence[QueueSpec]) -> dict[str, dict[str, Any]]:
        """One policy per service queue (each service may set its own delivery limit) and one
        for every dead-letter queue. RabbitMQ applies a single policy per queue."""
        policies: dict[str, dict[str, Any]] = {}
        for spec in specs:
            policies[f"spoc-{spec.service}-events"] = {
                "pattern": f"^{_literal(spec.queue)}$",
                "apply-to": "queues",
                "priority": POLICY_PRIORITY,
                "definition": {"delivery-limit": spec.backstop_limit},
            }
            policies[f"spoc-{spec.service}-dead"] = {
                "pattern": f"^{_literal(spec.dead_queue)}$",
                "apply-to": "queues",
                "priority": POLICY_PRIORITY,
                "definition": {
                    # RabbitMQ 4.x gives quorum queues a delivery limit of 20 by default, and a
                    # dead-letter queue has nowhere to send what exceeds it: each look at a dead
                    # letter (get, then give back) counts, so without this, looking loses it.
                    "delivery-limit": DEAD_QUEUE_DELIVERY_LIMIT,
                    "max-length": self.dead_letters.max_length,
                    "message-ttl": int(self.dead_letters.ttl_days * 86_400_000),
                },
            }
        return policies

    async def apply(self, specs: Sequence[QueueSpec]) -> None:
        """Puts every policy; raises httpx.HTTPError if the API refuses or is unreachable."""
        vhost = quote(self.vhost, safe="")
        async with httpx.AsyncClient(
            base_url=f"{self.base_url}/api",
            auth=(self.username, self.password),
            timeout=self.timeout,
        ) as client:
            for name, policy in self.policies(specs).items():
                response = await client.put(f"/policies/{vhost}/{name}", json=policy)
                response.raise_for_status()
        log.info("broker policies applied for %s", ", ".join(s.queue for s in specs))


async def legacy_limits(api: ManagementApi, specs: Sequence[QueueSpec]) -> dict[str, int]:
    """Queues declared by Spoc's first release, with the delivery limit as a queue argument.
    RabbitMQ takes the lower of argument and policy, so for them the old limit still counts
    every return (also connection losses on 3.x): they need the one-time move in
    docs/runbooks.md#queues-from-the-first-release."""
    vhost = quote(api.vhost, safe="")
    found: dict[str, int] = {}
    async with httpx.AsyncClient(
        base_url=f"{api.base_url}/api", auth=(api.username, api.password), timeout=api.timeout
    ) as client:
        for spec in specs:
            response = await client.get(f"/queues/{vhost}/{quote(spec.queue, safe='')}")
            if response.status_code == 404:
                continue
            response.raise_for_status()
            limit = (response.json().get("arguments") or {}).get("x-delivery-limit")
            if isinstance(limit, int):
                found[spec.queue] = limit
    return found


def _literal(name: str) -> str:
    return name.replace(".", r"\.")
