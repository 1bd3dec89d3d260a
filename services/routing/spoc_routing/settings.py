"""Routing's settings: environment variables SPOC_ROUTING_* plus the shared SPOC_AMQP_URL."""

from pydantic_settings import SettingsConfigDict

from spoc_platform.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SPOC_ROUTING_", extra="ignore")
