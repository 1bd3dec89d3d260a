"""SLA's settings: environment variables SPOC_SLA_* plus the shared SPOC_AMQP_URL."""

from pydantic_settings import SettingsConfigDict

from spoc_platform.settings import ServiceSettings


class SlaSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SPOC_SLA_", extra="ignore")
