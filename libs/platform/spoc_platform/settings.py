"""Typed settings every service shares; each service adds its own prefix SPOC_<SERVICE>_.

Any setting may come from a file instead of the environment, as secrets are handed to
containers: `<NAME>_FILE=/path` (e.g. SPOC_INTAKE_DATABASE_URL_FILE), or a file named like the
variable in the directory SPOC_SECRETS_DIR (e.g. /run/secrets/SPOC_INTAKE_ADMIN_TOKEN). The
environment variable itself wins over both; giving a variable and its _FILE at once is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from spoc_platform.logs import LogLevel, LogLevelSetting
from spoc_platform.secret_files import FileVariablesSource, secrets_dir_source
from spoc_platform.weak_secrets import MIN_TOKEN_LENGTH, weak_credentials, weak_token


class ServiceSettings(BaseSettings):
    # Errors never echo the input: a model-level error would otherwise print every setting,
    # tokens and URLs with passwords included, to the log or terminal of whoever starts it.
    model_config = SettingsConfigDict(
        extra="ignore", validate_default=True, hide_input_in_errors=True
    )

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
    log_level: LogLevelSetting = LogLevel.INFO
    log_json: bool | None = None
    max_body_bytes: int = Field(default=65_536, ge=1024)
    # A flood from one address cannot take every worker: beyond this many requests in flight
    # from one client, it is told to come back (429, Retry-After). 64 fits an office behind
    # one NAT address and the benchmark's clients; 0 switches the cap off.
    max_requests_per_client: int = Field(default=64, ge=0)
    # How long a client may take to send a request's body before it is cut off (408).
    body_read_seconds: float = Field(default=30.0, gt=0)
    # Bearer token of the admin API (/admin/...: dead letters), long enough not to be guessed
    # online. Unset: that API does not exist.
    admin_token: SecretStr | None = Field(default=None, min_length=MIN_TOKEN_LENGTH)
    # Bearer token Prometheus scrapes /metrics with (the admin token works too), so the
    # scraper never holds a credential that can purge dead letters. Without either token,
    # /metrics is open in development and absent (404) in production.
    metrics_token: SecretStr | None = Field(default=None, min_length=MIN_TOKEN_LENGTH)
    # Addresses (or networks, CIDR) of the proxies whose X-Forwarded-For/-Proto are believed:
    # the scheme and client address then are the ones the proxy saw. "*" trusts any peer,
    # only right when nothing but the proxy can reach the service. Shared: one proxy in front.
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        min_length=1,
        validation_alias=AliasChoices("SPOC_FORWARDED_ALLOW_IPS", "forwarded_allow_ips"),
    )
    # The path prefix a proxy serves this service under (and strips), e.g. /desk: the links
    # and redirects the service makes start with it.
    root_path: str = Field(default="", pattern=r"^(/[A-Za-z0-9._~-]+)*$")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier wins: explicit arguments, the environment, <NAME>_FILE, SPOC_SECRETS_DIR.
        return (
            init_settings,
            env_settings,
            FileVariablesSource(settings_cls),
            dotenv_settings,
            *secrets_dir_source(settings_cls),
        )

    @model_validator(mode="after")
    def _database_is_named(self) -> ServiceSettings:
        if not self.database_url:
            raise ValueError("database_url is required (SPOC_<SERVICE>_DATABASE_URL)")
        return self

    @model_validator(mode="after")
    def _no_weak_credentials_in_production(self) -> ServiceSettings:
        """PostgreSQL and RabbitMQ reached with a password anyone could guess, and tokens
        anyone could guess, are refused in production: the development default guest:guest,
        and the placeholders published in Spoc's compose file and Kubernetes example."""
        if self.environment != "production":
            return self
        prefix = str(self.model_config.get("env_prefix") or "SPOC_<SERVICE>_")
        urls = {f"{prefix}DATABASE_URL": self.database_url}
        if self.bus == "amqp":
            urls["SPOC_AMQP_URL"] = self.amqp_url
            if self.rabbitmq_management_url:
                urls["SPOC_RABBITMQ_MANAGEMENT_URL"] = self.rabbitmq_management_url
        for name, url in urls.items():
            problem = weak_credentials(url, password_required=name == "SPOC_AMQP_URL")
            if problem:
                raise ValueError(f"{name}: {problem}; weak credentials are refused in production")
        tokens = {
            f"{prefix}ADMIN_TOKEN": self.admin_token,
            f"{prefix}METRICS_TOKEN": self.metrics_token,
        }
        for name, token in tokens.items():
            problem = weak_token(token.get_secret_value()) if token is not None else None
            if problem:
                raise ValueError(f"{name}: {problem}; weak credentials are refused in production")
        return self
