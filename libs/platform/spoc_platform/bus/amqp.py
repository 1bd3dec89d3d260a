"""RabbitMQ transport on aio-pika: quorum queues, dead-lettering and confirmed publishes.

Two connections: one publishes, one consumes. During a memory or disk alarm RabbitMQ blocks
every connection that publishes; acknowledgements sharing that connection would stall with it
and nothing would drain. The consuming connection never publishes, so it keeps going."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError, ChannelPreconditionFailed, DeliveryError

from spoc_platform.bus import amqp_policies
from spoc_platform.bus.cloudevents import cloud_event_headers, cloud_event_headers_of
from spoc_platform.bus.port import (
    DEAD_EXCHANGE,
    EVENTS_EXCHANGE,
    DeadLetter,
    Delivery,
    MessageHandler,
    OutgoingMessage,
    PoisonMessage,
    PublishError,
    QueueSpec,
    RetryLater,
    retry_delay,
)

log = logging.getLogger(__name__)

# Fixed for the life of a queue: RabbitMQ refuses to redeclare a queue with other arguments
# (406 PRECONDITION_FAILED), so nothing that may change lives here. The delivery limit and the
# dead-letter queues' bounds are policies (see amqp_policies), applied by the topology step.
QUEUE_ARGUMENTS: dict[str, Any] = {
    "x-queue-type": "quorum",
    "x-dead-letter-exchange": DEAD_EXCHANGE,
    # at-least-once dead-lettering needs reject-publish overflow; nothing dies unseen.
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}
DEAD_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}


def queue_arguments(spec: QueueSpec) -> dict[str, Any]:
    """The same for every service and every release, whoever declares the queue first."""
    return {**QUEUE_ARGUMENTS, "x-dead-letter-routing-key": spec.service}


ConnectionListener = Callable[[bool], None]


class _AmqpSubscription:
    def __init__(
        self,
        channel: AbstractChannel,
        queue: AbstractQueue,
        tag: str,
        in_flight: set[asyncio.Task[Any]],
        on_message: Callable[[AbstractIncomingMessage], Any],
    ) -> None:
        self._channel = channel
        self._queue = queue
        self._tag: str | None = tag
        self._in_flight = in_flight
        self._on_message = on_message

    async def pause(self) -> None:
        """basic.cancel without waiting: deliveries already here stay with their handlers. A
        paused consumer gets nothing new, so a long database outage cannot pile up held
        messages each time the broker's consumer timeout recycles the channel."""
        if self._tag is None:
            return
        tag, self._tag = self._tag, None
        with contextlib.suppress(AMQPError, ConnectionError, RuntimeError):
            await self._queue.cancel(tag)

    async def resume(self) -> None:
        if self._tag is None:
            self._tag = await self._queue.consume(self._on_message)

    async def cancel(self) -> None:
        try:
            await self.pause()
            # Let running handlers finish and ack, as the memory bus does: closing the channel
            # under them would interrupt them and requeue their messages.
            # One turn of the loop first, so a delivery read just before CancelOk has started.
            await asyncio.sleep(0)
            while self._in_flight:
                await asyncio.wait(set(self._in_flight))
        finally:
            await self._channel.close()


class AmqpBus:
    def __init__(
        self,
        url: str,
        *,
        publish_timeout: float = 5.0,
        management: amqp_policies.ManagementApi | None = None,
        on_connection_change: ConnectionListener | None = None,
    ) -> None:
        self._url = url
        self._publish_timeout = publish_timeout
        self._management = management or amqp_policies.ManagementApi.for_amqp_url(url)
        self._listeners: list[ConnectionListener] = []
        if on_connection_change is not None:
            self._listeners.append(on_connection_change)
        self._publishing: AbstractRobustConnection | None = None
        self._consuming: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._dead_exchange: AbstractExchange | None = None
        self._healthy = False
        # Connections lost and not yet back: a robust connection does not count as closed
        # while it reconnects, so its callbacks are what tell.
        self._lost: set[AbstractRobustConnection] = set()

    def add_connection_listener(self, listener: ConnectionListener) -> None:
        """Called with True/False whenever the bus connects or loses a connection."""
        self._listeners.append(listener)
        listener(self.is_healthy())

    async def connect(self) -> None:
        # Heartbeat and reconnect interval travel in the URL (aio-pika's robust connection).
        self._publishing = await aio_pika.connect_robust(
            self._url, client_properties={"connection_name": "spoc publish"}
        )
        self._consuming = await aio_pika.connect_robust(
            self._url, client_properties={"connection_name": "spoc consume"}
        )
        for connection in (self._publishing, self._consuming):
            connection.close_callbacks.add(self._on_close)
            connection.reconnect_callbacks.add(self._on_reconnect)
        self._publish_channel = await self._publishing.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._exchange, self._dead_exchange = await self._declare_exchanges(self._publish_channel)
        self._set_health()

    async def close(self) -> None:
        for connection in (self._publishing, self._consuming):
            if connection is not None:
                connection.close_callbacks.discard(self._on_close)
                await connection.close()
        self._publishing = self._consuming = None
        self._publish_channel = self._exchange = self._dead_exchange = None
        self._lost.clear()
        self._healthy = False  # closed on purpose: no "connection lost" warning
        self._set_health()

    def is_healthy(self) -> bool:
        return (
            self._publishing is not None
            and not self._publishing.is_closed
            and self._consuming is not None
            and not self._consuming.is_closed
            and self._publish_channel is not None
            and not self._publish_channel.is_closed
            and not self._lost
        )

    def _on_close(self, connection: Any, *_: Any) -> None:
        self._lost.add(connection)
        self._set_health(False)

    def _on_reconnect(self, connection: Any, *_: Any) -> None:
        self._lost.discard(connection)
        self._set_health()

    def _set_health(self, healthy: bool | None = None) -> None:
        healthy = self.is_healthy() if healthy is None else healthy
        if healthy != self._healthy:
            self._healthy = healthy
            (log.info if healthy else log.warning)(
                "RabbitMQ %s", "connected" if healthy else "connection lost; reconnecting"
            )
        for listener in self._listeners:
            listener(healthy)

    @staticmethod
    async def _declare_exchanges(
        channel: AbstractChannel,
    ) -> tuple[AbstractExchange, AbstractExchange]:
        exchange = await channel.declare_exchange(
            EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        dead = await channel.declare_exchange(
            DEAD_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
        )
        return exchange, dead

    def _require(self, connection: AbstractRobustConnection | None) -> AbstractRobustConnection:
        if connection is None:
            raise RuntimeError("AmqpBus.connect() was not called")
        return connection

    async def _declare_queue(
        self, channel: AbstractChannel, name: str, arguments: dict[str, Any]
    ) -> tuple[AbstractChannel, AbstractQueue]:
        """Declares `name` with this release's fixed arguments. A queue made by an earlier
        release with other arguments is used as it is (declaring it would fail with 406 and
        close the channel): its limits come from policies now, which apply to it too."""
        try:
            return channel, await channel.declare_queue(name, durable=True, arguments=arguments)
        except ChannelPreconditionFailed as error:
            log.warning("queue %s exists with other arguments; using it as it is (%s)", name, error)
            channel = await self._require(self._consuming).channel()
            return channel, await channel.declare_queue(name, passive=True)

    async def _declare_on(
        self, channel: AbstractChannel, spec: QueueSpec
    ) -> tuple[AbstractChannel, AbstractQueue]:
        await self._declare_exchanges(channel)
        channel, dead = await self._declare_queue(channel, spec.dead_queue, DEAD_QUEUE_ARGUMENTS)
        await dead.bind(DEAD_EXCHANGE, routing_key=spec.service)
        channel, queue = await self._declare_queue(channel, spec.queue, queue_arguments(spec))
        for binding in spec.bindings:
            await queue.bind(EVENTS_EXCHANGE, routing_key=binding)
        return channel, queue

    async def declare(self, spec: QueueSpec) -> None:
        channel: AbstractChannel = await self._require(self._consuming).channel()
        try:
            channel, _ = await self._declare_on(channel, spec)
        finally:
            with contextlib.suppress(AMQPError, RuntimeError):
                await channel.close()

    async def apply_policies(self, specs: Sequence[QueueSpec]) -> None:
        """The limits that may change between releases, as broker policies (management API)."""
        await self._management.apply(specs)

    async def publish(self, message: OutgoingMessage) -> None:
        if self._exchange is None:
            raise PublishError("not connected to RabbitMQ")
        amqp_message = aio_pika.Message(
            message.body,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            content_type="application/json",
            type=message.routing_key,
            # Additive: CloudEvents-aware consumers read these, Spoc's read the body.
            headers=cloud_event_headers(message.body),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await self._exchange.publish(
                amqp_message,
                routing_key=message.routing_key,
                mandatory=True,
                timeout=self._publish_timeout,
            )
        except DeliveryError as error:
            returned = error.message is not None
            raise PublishError(
                f"{message.routing_key} not confirmed: {error}", unroutable=returned
            ) from error
        except (TimeoutError, AMQPError, ConnectionError, RuntimeError) as error:
            raise PublishError(f"{message.routing_key} not confirmed: {error!r}") from error

    async def consume(self, spec: QueueSpec, handler: MessageHandler) -> _AmqpSubscription:
        channel: AbstractChannel = await self._require(self._consuming).channel()
        channel, queue = await self._declare_on(channel, spec)
        await channel.set_qos(prefetch_count=spec.prefetch)
        in_flight: set[asyncio.Task[Any]] = set()

        async def on_message(message: AbstractIncomingMessage) -> None:
            # aio-pika runs each delivery as a task of its own; cancel() waits for these.
            task = asyncio.current_task()
            assert task is not None
            in_flight.add(task)
            try:
                await handle(message)
            except (AMQPError, ConnectionError, RuntimeError) as error:
                # The channel went away under the handler (a connection cut): the broker gives
                # the message to the queue again by itself, and the inbox absorbs the repeat.
                log.info("could not settle %s: %r", message.message_id, error)
            finally:
                in_flight.discard(task)

        async def handle(message: AbstractIncomingMessage) -> None:
            # Quorum queues add the header from the first redelivery on; absent means first.
            raw_count = message.headers.get("x-delivery-count")
            count = raw_count if isinstance(raw_count, int) else int(bool(message.redelivered))
            delivery = Delivery(message.message_id, message.routing_key or "", message.body, count)
            try:
                await handler(delivery)
            except PoisonMessage as error:
                await self._dead_letter(message, spec, str(error), count)
            except RetryLater as retry:
                await asyncio.sleep(retry.delay)
                # reject, not nack: from RabbitMQ 4.3 only a reject counts towards the
                # broker's delivery limit, the backstop under the consumer's own count.
                await message.reject(requeue=True)
            except asyncio.CancelledError:
                # A closed channel requeues by itself; only an open one needs telling.
                with contextlib.suppress(AMQPError, RuntimeError):
                    await message.reject(requeue=True)
                raise
            except Exception:
                log.exception("handler raised outside the consumer's verdicts")
                await asyncio.sleep(retry_delay(count, spec.max_retry_delay))
                await message.reject(requeue=True)
            else:
                await message.ack()

        tag = await queue.consume(on_message)
        return _AmqpSubscription(channel, queue, tag, in_flight, on_message)

    async def _dead_letter(
        self, message: AbstractIncomingMessage, spec: QueueSpec, reason: str, count: int
    ) -> None:
        """Publishes the dead letter with why it died (the broker's own dead-lettering can only
        say "rejected"), then acks the original. If that publish cannot be confirmed (e.g. the
        broker blocks publishers during an alarm), the broker dead-letters it instead."""
        if self._dead_exchange is not None:
            headers: dict[str, Any] = {
                **cloud_event_headers_of(message.headers),
                "x-spoc-error": reason[:1000],
                # A replayed letter arrives by its queue's name: keep where it first came from.
                "x-spoc-original-routing-key": message.headers.get(
                    "x-spoc-original-routing-key", message.routing_key or ""
                ),
                "x-spoc-attempts": count + 1,
                "x-spoc-dead-at": datetime.now(UTC).isoformat(),
            }
            dead = aio_pika.Message(
                message.body,
                message_id=message.message_id,
                correlation_id=message.correlation_id,
                content_type=message.content_type,
                type=message.type,
                headers=headers,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            try:
                await self._dead_exchange.publish(
                    dead, routing_key=spec.service, mandatory=True, timeout=self._publish_timeout
                )
            except (DeliveryError, TimeoutError, AMQPError, ConnectionError, RuntimeError) as error:
                log.warning("dead letter not confirmed (%r); the broker dead-letters it", error)
            else:
                await message.ack()
                return
        await message.reject(requeue=False)

    # Dead letters an operator can work (see amqp_dead_letters).
    async def dead_letters(self, service: str, *, limit: int = 100) -> list[DeadLetter]:
        from spoc_platform.bus import amqp_dead_letters

        return await amqp_dead_letters.list_dead_letters(
            self._require(self._consuming), service, limit
        )

    async def replay_dead_letters(
        self, service: str, message_ids: Sequence[str] | None = None
    ) -> int:
        from spoc_platform.bus import amqp_dead_letters

        return await amqp_dead_letters.replay_dead_letters(
            self._require(self._publishing), service, message_ids
        )

    async def purge_dead_letters(
        self, service: str, message_ids: Sequence[str] | None = None
    ) -> int:
        from spoc_platform.bus import amqp_dead_letters

        return await amqp_dead_letters.purge_dead_letters(
            self._require(self._consuming), service, message_ids
        )
