"""Intake's settings: environment variables SPOC_INTAKE_* plus the shared SPOC_AMQP_URL."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from spoc_platform.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SPOC_INTAKE_", extra="ignore")

    number_prefix: str = Field(default="SD", pattern=r"^[A-Z][A-Z0-9]{0,9}$")
    # Without agent credentials (next on the roadmap) anyone may open a ticket, as on a portal.
    anonymous_intake: bool = True
    # How long a replayed Idempotency-Key returns the first answer.
    idempotency_hours: int = Field(default=24, ge=1, le=24 * 30)
