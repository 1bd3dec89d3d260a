"""Notify's settings: environment variables SPOC_NOTIFY_* plus the shared SPOC_AMQP_URL."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from spoc_platform.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SPOC_NOTIFY_", extra="ignore")

    # smtp://host:port, smtps://host:465, smtp://user:pass@host:587?starttls=true
    smtp_url: str = "smtp://127.0.0.1:1025"
    # When set, mail is written to this Maildir instead of SMTP (the embedded default does this).
    maildir: Path | None = None
    mail_from: str = "Spoc Service Desk <desk@spoc.localhost>"
    # The public address of intake, for the links requesters receive.
    portal_url: str = "http://127.0.0.1:8000"
    max_attempts: int = Field(default=8, ge=1, le=100)
    send_concurrency: int = Field(default=4, ge=1, le=64)
