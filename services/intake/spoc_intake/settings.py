"""Intake's settings: environment variables SPOC_INTAKE_* plus the shared SPOC_AMQP_URL."""

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from spoc_platform.dates import TimeZoneSetting
from spoc_platform.sealing import DEVELOPMENT_RECIPIENT, check_key
from spoc_platform.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SPOC_INTAKE_", extra="ignore")

    number_prefix: str = Field(default="SD", pattern=r"^[A-Z][A-Z0-9]{0,9}$")
    # Without agent credentials (next on the roadmap) anyone may open a ticket, as on a portal.
    anonymous_intake: bool = True
    # How long a replayed Idempotency-Key returns the first answer.
    idempotency_hours: int = Field(default=24, ge=1, le=24 * 30)
    # Notify's public key (base64, `spoc keys generate`): requesters' access keys are sealed to
    # it before they leave intake, so only notify can turn one into a link.
    access_key_recipient: str = DEVELOPMENT_RECIPIENT
    # The desk's time zone (IANA): the requester's page shows due times on its clock.
    time_zone: TimeZoneSetting = "UTC"

    @field_validator("access_key_recipient")
    @classmethod
    def _recipient_is_a_key(cls, value: str) -> str:
        return check_key(value, "SPOC_INTAKE_ACCESS_KEY_RECIPIENT")

    @model_validator(mode="after")
    def _no_development_key_in_production(self) -> "IntakeSettings":
        if self.environment == "production" and self.access_key_recipient == DEVELOPMENT_RECIPIENT:
            raise ValueError(
                "the development access-key pair is refused in production: set "
                "SPOC_INTAKE_ACCESS_KEY_RECIPIENT (see `spoc keys generate`)"
            )
        return self
