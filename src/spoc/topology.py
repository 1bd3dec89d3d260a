"""`spoc topology apply`: the deploy step that makes every queue and policy before any service.

Every service declares the whole topology at start as well; this step is for a first deploy
(nothing may be published before the queues that need it exist, whichever service starts first)
and for changing limits: policies apply to queues that exist, with no restart."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer

from spoc_contracts.topology import SUBSCRIPTIONS
from spoc_platform.bus import QueueSpec

topology = typer.Typer(help="The RabbitMQ topology: every queue, binding and policy.")

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/?heartbeat=30&reconnect_interval=2"


def _delivery_limit(service: str, default: int) -> int:
    """A service's own SPOC_<SERVICE>_DELIVERY_LIMIT, as that service reads it."""
    return int(os.environ.get(f"SPOC_{service.upper()}_DELIVERY_LIMIT", default))


def desk_topology(default_limit: int) -> list[QueueSpec]:
    return [
        QueueSpec(service, bindings, delivery_limit=_delivery_limit(service, default_limit))
        for service, bindings in SUBSCRIPTIONS.items()
    ]


@topology.command("apply")
def apply(
    amqp_url: Annotated[
        str, typer.Option(envvar="SPOC_AMQP_URL", help="The broker.", show_default=False)
    ] = DEFAULT_AMQP_URL,
    management_url: Annotated[
        str,
        typer.Option(
            envvar="SPOC_RABBITMQ_MANAGEMENT_URL",
            help="RabbitMQ's management API (default: the AMQP host, port 15672).",
        ),
    ] = "",
    delivery_limit: Annotated[
        int,
        typer.Option(
            min=1, help="Failed attempts before a dead letter, unless SPOC_<SVC>_DELIVERY_LIMIT."
        ),
    ] = 10,
    dead_letter_max_length: Annotated[int, typer.Option(min=1)] = 100_000,
    dead_letter_ttl_days: Annotated[float, typer.Option(min=0.001)] = 14.0,
    policies: Annotated[
        bool,
        typer.Option(
            help="Put the policies too (management API). Without them the consumers still "
            "enforce their limits, but nothing backstops them and dead letters are unbounded."
        ),
    ] = True,
) -> None:
    """Declare every service's queue, dead-letter queue and bindings, and put the policies."""
    from spoc_platform.bus.amqp import AmqpBus
    from spoc_platform.bus.amqp_policies import DeadLetterBounds, ManagementApi, legacy_limits

    specs = desk_topology(delivery_limit)
    management = ManagementApi.for_amqp_url(
        amqp_url,
        management_url or None,
        DeadLetterBounds(dead_letter_max_length, dead_letter_ttl_days),
    )

    legacy: dict[str, int] = {}

    async def run() -> None:
        bus = AmqpBus(amqp_url, management=management)
        await bus.connect()
        try:
            for spec in specs:
                await bus.declare(spec)
            if policies:
                await bus.apply_policies(specs)
                legacy.update(await legacy_limits(management, specs))
        finally:
            await bus.close()

    try:
        asyncio.run(run())
    except Exception as error:
        typer.echo(f"topology not applied: {error!r}", err=True)
        raise typer.Exit(1) from error
    for spec in specs:
        typer.echo(
            f"{spec.queue}: {', '.join(spec.bindings)} "
            f"(dead letters: {spec.dead_queue}; broker delivery limit {spec.backstop_limit})",
            err=True,
        )
    for queue, limit in legacy.items():
        typer.echo(
            f"warning: {queue} was declared with x-delivery-limit={limit} as an argument (Spoc's "
            "first release); the broker still dead-letters at that count. Move it once: "
            "docs/runbooks.md#queues-from-the-first-release",
            err=True,
        )
