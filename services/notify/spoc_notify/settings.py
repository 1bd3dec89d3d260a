"""Notify's settings: environment variables SPOC_NOTIFY_* plus the shared SPOC_AMQP_URL."""

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from spoc_notify.mail import smtp_options
from spoc_platform.dates import TimeZoneSetting
from spoc_platform.sealing import DEVELOPMENT_SECRET, check_key
from spoc_platform.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SPOC_NOTIFY_", extra="ignore")

    # smtp://host:port (STARTTLS whenever the server offers it), smtps://host:465 (TLS from
    # the start), smtp://user:pass@host:587?starttls=required (STARTTLS or no send at all),
    # smtp://catcher:1025?starttls=false (never). A login only ever travels encrypted...
    # Secret: it may carry the relay's password, which must stay out of reprs, dumps and logs.
    smtp_url: SecretStr = SecretStr("smtp://127.0.0.1:1025")
    # ...unless this says a mail catcher on a trusted network may have it in clear text.
    smtp_allow_insecure_auth: bool = False
    # CA certificates (PEM) to trust for the relay, besides the system's (a private CA).
    smtp_ca_file: Path | None = None
    # When set, mail is written to this Maildir instead of SMTP (the embedded default does this).
    maildir: Path | None = None
    mail_from: str = "Spoc Service Desk <desk@spoc.localhost>"
    # The public address of intake, for the links requesters receive.
    portal_url: str = "http://127.0.0.1:8000"
    # The desk's time zone (IANA): due times in mail are shown on its clock, in the
    # requester's language.
    time_zone: TimeZoneSetting = "UTC"
    max_attempts: int = Field(default=8, ge=1, le=100)
    send_concurrency: int = Field(default=4, ge=1, le=64)
    # A claimed delivery is one dispatcher's for this long (renewed right before its send).
    send_lease: float = Field(default=60.0, ge=5.0, le=3600.0)
    # On stop, sends in flight may finish and be recorded for this long before being cut off
    # (with the rest of a stop, keep it inside the orchestrator's grace period: 30 s by default).
    send_drain_timeout: float = Field(default=15.0, ge=0.0, le=600.0)
    # Notify's private key (base64, `spoc keys generate`): it alone opens the requesters'
    # access keys intake seals to its public half, and the mail notify keeps until sent.
    access_key_secret: str = DEVELOPMENT_SECRET
    # After a rotation, the earlier secrets (a JSON list): they still open what they sealed
    # (tickets in flight, mail not yet sent); only the current one is sealed to.
    access_key_previous_secrets: list[str] = Field(default_factory=list)
    # Sent and failed deliveries (the delivery log) are kept this long, then forgotten.
    delivery_retention_days: int = Field(default=90, ge=1, le=3650)
    # What notify gathered about a ticket's requester, from the last event that added to it.
    contact_retention_days: int = Field(default=90, ge=1, le=3650)

    @field_validator("access_key_secret")
    @classmethod
    def _secret_is_a_key(cls, value: str) -> str:
        return check_key(value, "SPOC_NOTIFY_ACCESS_KEY_SECRET")

    @field_validator("access_key_previous_secrets")
    @classmethod
    def _previous_are_keys(cls, values: list[str]) -> list[str]:
        return [check_key(v, "SPOC_NOTIFY_ACCESS_KEY_PREVIOUS_SECRETS") for v in values]

    @model_validator(mode="after")
    def _smtp_url_is_usable(self) -> "NotifySettings":
        try:
            smtp_options(
                self.smtp_url.get_secret_value(), allow_insecure_auth=self.smtp_allow_insecure_auth
            )
        except ValueError as error:
            raise ValueError(f"SPOC_NOTIFY_SMTP_URL: {error}") from error
        return self

    @model_validator(mode="after")
    def _no_development_key_in_production(self) -> "NotifySettings":
        if self.environment == "production" and self.access_key_secret == DEVELOPMENT_SECRET:
            raise ValueError(
                "the development access-key pair is refused in production: set "
                "SPOC_NOTIFY_ACCESS_KEY_SECRET (see `spoc keys generate`)"
            )
        return self
