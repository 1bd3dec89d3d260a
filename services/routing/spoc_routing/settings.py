"""Routing's settings: environment variables SPOC_ROUTING_* plus the shared SPOC_AMQP_URL."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from spoc_platform.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SPOC_ROUTING_", extra="ignore")

    # How often each group's waiting tickets are offered to whoever can take them now (a shift
    # that started, a capacity raised): at most this late after the moment they could.
    queue_sweep_seconds: float = Field(default=30.0, gt=0, le=3600)
    # How often each replica reads the desk version in force from the database: a change made
    # through the admin API on another replica applies here at most this late.
    desk_refresh_seconds: float = Field(default=5.0, gt=0, le=3600)
