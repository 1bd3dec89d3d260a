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

    # Requesters' sign-in links and sessions (requester_links.py). A link is single-use and
    # lives this long; the session it opens ends after this long unused, or at the latest
    # after the absolute limit, whichever comes first.
    requester_link_minutes: int = Field(default=30, ge=1, le=24 * 60)
    requester_session_idle_minutes: int = Field(default=120, ge=5, le=30 * 24 * 60)
    requester_session_hours: int = Field(default=24, ge=1, le=24 * 90)

    # --- The front door under abuse and floods (D19; spoc_intake.front_door) ---------------
    # What an anonymous caller may make the desk do (open tickets, reply, ask for sign-in
    # links: each sends mail on the caller's word). A budget is one or more "N/period" joined
    # by ";" (e.g. "20/minute;200/hour"); empty: no limit. One budget per client address (an
    # IPv6 client per /64, what one subscriber gets) and one per e-mail address mailed.
    rate_limit_per_client: str = "20/minute;200/hour"
    rate_limit_per_recipient: str = "5/minute;20/hour"
    # Where the counts live: "memory://" (this process: N replicas allow N times each budget),
    # or a Redis all replicas share: redis://[:password@]host:6379/0, rediss://… (TLS) or
    # redis+unix:///path/to/socket?db=0. Should Redis fail, requests pass uncounted (fail
    # open, front_door.py) after at most rate_limit_storage_timeout seconds.
    rate_limit_storage: str = "memory://"
    # What this desk's keys in a shared Redis start with, so desks sharing one Redis keep
    # separate budgets. Empty: "spoc-intake:" and a digest of the intake database's host, port
    # and name, which every replica of one desk shares and no other desk does.
    rate_limit_key_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._:-]{0,100}$")
    # Seconds a request waits for the shared storage (to connect, for each answer, and for
    # its whole check) before it passes uncounted: a hung Redis cannot stall the front door.
    rate_limit_storage_timeout: float = Field(default=0.5, gt=0, le=10)
    # Networks (CIDR, comma-separated) whose clients pass the rate limits: the desk's own
    # scripts, a trusted intranet. Unset: loopback in development (`spoc up`, tests), none in
    # production. Behind a proxy the client is the address it forwards (SPOC_FORWARDED_ALLOW_IPS).
    trusted_networks: str | None = None
    # Requesters refused (403 `blocked`): e-mail addresses and domains (a domain covers its
    # subdomains), and client networks (CIDR); comma-separated.
    blocked_senders: str = ""
    blocked_networks: str = ""
    # The largest body intake reads, in bytes: it must hold the largest valid ticket. That is
    # 1,452,540 bytes: every field at its limit in characters (description 20,000, 50 intake
    # fields of 2,000, ...) and every character one JSON writes as a 12-byte surrogate-pair
    # escape (an emoji through Python's json or requests); 486,940 bytes as raw UTF-8.
    max_body_bytes: int = Field(default=1_536 * 1024, ge=1024)

    @field_validator("rate_limit_per_client", "rate_limit_per_recipient")
    @classmethod
    def _budget_is_readable(cls, value: str) -> str:
        from spoc_intake.front_door import parse_budget

        parse_budget(value)
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _storage_is_known(cls, value: str) -> str:
        from spoc_intake.front_door import check_storage_url

        check_storage_url(value)
        return value

    @field_validator("trusted_networks", "blocked_networks")
    @classmethod
    def _networks_are_readable(cls, value: str | None) -> str | None:
        from spoc_intake.front_door import parse_networks

        if value is not None:
            parse_networks(value)
        return value

    # --- Staff sign-in (staff_sign_in.py, passwords.py) ------------------------------------
    # A staff session ends after this long unused, or at the latest after the absolute limit.
    staff_session_idle_minutes: int = Field(default=60, ge=5, le=7 * 24 * 60)
    staff_session_hours: int = Field(default=12, ge=1, le=24 * 30)
    # Consecutive failed sign-ins before the account locks: first for a minute, doubled by
    # each further failure, at most an hour.
    staff_lockout_failures: int = Field(default=5, ge=1, le=100)
    # argon2id's cost (RFC 9106's second recommendation by default). Raising them rehashes
    # each password at its owner's next sign-in.
    password_time_cost: int = Field(default=3, ge=1, le=20)
    password_memory_kib: int = Field(default=65_536, ge=8 * 1024, le=4 * 1024 * 1024)
    password_parallelism: int = Field(default=4, ge=1, le=64)

    # --- The conversation and the workflow (work.py, workflow.py) --------------------------
    # How long after a resolution its requester may confirm or reopen it; after that, they are
    # asked to open a new request (linking the two is left to e-mail threading, issue 11).
    reopen_days: int = Field(default=7, ge=0, le=365)
    # Every agent sees every ticket, not only their groups' (and the unrouted ones).
    agents_see_all: bool = False

    # --- Staff sign-in under floods (staff_sign_in.py, passwords.py, front_door.py) ---------
    # argon2 verifications running at once (each takes password_memory_kib and a core for tens
    # of milliseconds); further sign-ins wait their turn, so a flood cannot exhaust memory.
    password_checks_at_once: int = Field(default=4, ge=1, le=64)
    # Sign-in attempts per client address and per account address (budgets as for the front
    # door above, counted apart from its mail budgets); refused with 429 and Retry-After.
    sign_in_rate_limit_per_client: str = "30/minute;300/hour"
    sign_in_rate_limit_per_account: str = "10/minute;100/hour"

    @field_validator("sign_in_rate_limit_per_client", "sign_in_rate_limit_per_account")
    @classmethod
    def _sign_in_budget_is_readable(cls, value: str) -> str:
        from spoc_intake.front_door import parse_budget

        parse_budget(value)
        return value
