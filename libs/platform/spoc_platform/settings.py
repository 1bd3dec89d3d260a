"""Typed settings every service shares; each service adds its own prefix SPOC_<SERVICE>_."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", validate_default=True)

    environment: Literal["development", "production"] = "development"
    database_url: str = ""
    # A fixed pool: opening and closing overflow connections under load cost PostgreSQL more
    # than the work. Handlers beyond it wait for a connection rather than open one.
    database_pool_size: int = Field(default=20, ge=1, le=200)
    # How long work waits for a pooled connection before it counts as an outage: an HTTP
    # request then answers 503 with Retry-After (well inside clients' and proxies' timeouts),
    # an event is held and tried again.
    database_pool_timeout: float = Field(default=10.0, gt=0, le=300)
    bus: Literal["amqp", "memory"] = "amqp"
    # Shared by every service, so it has no service prefix.
    amqp_url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/?heartbeat=30&reconnect_interval=2",
        validation_alias=AliasChoices("SPOC_AMQP_URL", "amqp_url"),
    )
    # The RabbitMQ management API, for the policies that carry limits (see bus.amqp_policies).
    # Empty: the AMQP host on port 15672, with the AMQP URL's credentials.
    rabbitmq_management_url: str = Field(
        default="",
        validation_alias=AliasChoices("SPOC_RABBITMQ_MANAGEMENT_URL", "rabbitmq_management_url"),
    )
    # Each service puts its own queue's policies at start; off where only a deploy step may.
    apply_broker_policies: bool = True
    dead_letter_max_length: int = Field(default=100_000, ge=1)
    dead_letter_ttl_days: float = Field(default=14.0, gt=0)
    prefetch: int = Field(default=32, ge=1, le=10_000)
    # Failed handler attempts before an event is dead-lettered, counted by the consumer itself.
    delivery_limit: int = Field(default=10, ge=1, le=1000)
    publish_timeout: float = Field(default=5.0, gt=0)
    # Publishes in flight per relay pass: a larger batch on a busy loop outran the publish
    # timeout and was sent twice (measured with 256; none with 64).
    outbox_window: int = Field(default=64, ge=1, le=10_000)
    outbox_poll_interval: float = Field(default=1.0, gt=0)
    # Published outbox rows are kept this long (what a bus that lost its messages can replay).
    outbox_retention_hours: float = Field(default=1.0, gt=0, le=24 * 30)
    # Handled event ids are kept this long: a copy redelivered later would be handled again,
    # so keep it beyond the longest redelivery (retries, dead-letter replays) you allow.
    inbox_retention_days: float = Field(default=7.0, ge=1, le=365)
    desk_config: Path | None = Field(
        default=None, validation_alias=AliasChoices("SPOC_DESK_CONFIG", "desk_config")
    )
    log_level: str = "INFO"
    log_json: bool | None = None
    max_body_bytes: int = Field(default=65_536, ge=1024)
    # Bearer token of the admin API (/admin/...: dead letters), long enough not to be guessed
    # online. Unset: that API does not exist.
    admin_token: SecretStr | None = Field(default=None, min_length=32)

    @model_validator(mode="after")
    def _database_is_named(self) -> ServiceSettings:
        if not self.database_url:
            raise ValueError("database_url is required (SPOC_<SERVICE>_DATABASE_URL)")
        if self.environment == "production" and "guest:guest@" in self.amqp_url:
            raise ValueError("the default RabbitMQ credentials are refused in production")
        return self
