"""One message-bus port with two transports: RabbitMQ (AMQP) and in-process memory."""

from spoc_platform.bus.port import (
    DEAD_EXCHANGE,
    EVENTS_EXCHANGE,
    DeadLetter,
    Delivery,
    MessageBus,
    MessageHandler,
    OutgoingMessage,
    PoisonMessage,
    PublishError,
    QueueSpec,
    RetryLater,
    Subscription,
    retry_delay,
    topic_matches,
)

__all__ = [
    "DEAD_EXCHANGE",
    "EVENTS_EXCHANGE",
    "DeadLetter",
    "Delivery",
    "MessageBus",
    "MessageHandler",
    "OutgoingMessage",
    "PoisonMessage",
    "PublishError",
    "QueueSpec",
    "RetryLater",
    "Subscription",
    "retry_delay",
    "topic_matches",
]
