"""Typed settings that fail fast (STYLE example 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings.exceptions import SettingsError

from spoc_intake.settings import IntakeSettings
from spoc_notify.settings import NotifySettings
from spoc_routing.settings import RoutingSettings
from spoc_sla.settings import SlaSettings

pytestmark = pytest.mark.unit


def test_each_service_reads_its_own_prefix_and_the_shared_broker_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPOC_AMQP_URL", "amqp://spoc:secret@rabbit:5672/spoc")
    monkeypatch.setenv("SPOC_ROUTING_DATABASE_URL", "postgresql+asyncpg://r@db/spoc_routing")
    monkeypatch.setenv("SPOC_INTAKE_DATABASE_URL", "postgresql+asyncpg://i@db/spoc_intake")
    monkeypatch.setenv("SPOC_ROUTING_PREFETCH", "7")

    routing, intake = RoutingSettings(), IntakeSettings()

    assert routing.database_url.endswith("spoc_routing") and routing.prefetch == 7
    assert intake.database_url.endswith("spoc_intake") and intake.prefetch == 32
    assert routing.amqp_url == intake.amqp_url == "amqp://spoc:secret@rabbit:5672/spoc"


def test_a_service_without_a_database_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPOC_NOTIFY_DATABASE_URL", raising=False)
    with pytest.raises(ValidationError, match="SPOC_<SERVICE>_DATABASE_URL"):
        NotifySettings()


STRONG_AMQP = "amqp://spoc:a-long-broker-secret@rabbit/spoc"
STRONG_DATABASE = "postgresql+asyncpg://spoc_routing:a-long-db-secret@db/spoc_routing"


def test_production_refuses_the_default_broker_credentials() -> None:
    with pytest.raises(ValidationError, match="SPOC_AMQP_URL: the password is a well-known"):
        RoutingSettings(database_url="sqlite+aiosqlite:///x", environment="production")
    RoutingSettings(
        database_url="sqlite+aiosqlite:///x", environment="production", amqp_url=STRONG_AMQP
    )


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("", "empty"),
        ("changeme", "well-known"),
        ("PostGres", "well-known"),
        ("spoc_routing", "user name"),
        ("Sh0rt-pass", "shorter than 12"),
    ],
)
def test_production_refuses_weak_database_and_broker_passwords(password: str, reason: str) -> None:
    weak_database = f"postgresql+asyncpg://spoc_routing:{password}@db/spoc_routing"
    with pytest.raises(ValidationError, match=f"SPOC_ROUTING_DATABASE_URL: .*{reason}"):
        RoutingSettings(environment="production", database_url=weak_database, amqp_url=STRONG_AMQP)
    weak_broker = f"amqp://spoc_routing:{password}@rabbit/spoc"
    with pytest.raises(ValidationError, match=f"SPOC_AMQP_URL: .*{reason}"):
        RoutingSettings(
            environment="production", database_url=STRONG_DATABASE, amqp_url=weak_broker
        )
    # Development takes them: a laptop's broker and database are its own business.
    RoutingSettings(database_url=weak_database, amqp_url=weak_broker)


def test_production_refuses_a_broker_url_without_password_as_it_means_guest() -> None:
    for url in ("amqp://rabbit/spoc", "amqp://spoc@rabbit/spoc"):
        with pytest.raises(ValidationError, match="SPOC_AMQP_URL: no password"):
            RoutingSettings(environment="production", database_url=STRONG_DATABASE, amqp_url=url)
    # A database URL without a password authenticates otherwise (client certificate, passfile).
    RoutingSettings(
        environment="production",
        database_url="postgresql+asyncpg://spoc_routing@db/spoc_routing",
        amqp_url=STRONG_AMQP,
    )
    # The in-process bus needs no broker, so its URL is not checked.
    RoutingSettings(environment="production", database_url=STRONG_DATABASE, bus="memory")


def test_a_setting_is_read_from_the_file_its_FILE_variable_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    database = tmp_path / "database-url"
    # The trailing newline every editor and `kubectl create secret --from-file` leaves is dropped.
    database.write_text(STRONG_DATABASE + "\n")
    broker = tmp_path / "amqp-url"
    broker.write_text(STRONG_AMQP)
    token = tmp_path / "admin-token"
    token.write_text("t" * 40 + "\n")
    monkeypatch.setenv("SPOC_ROUTING_DATABASE_URL_FILE", str(database))
    monkeypatch.setenv("SPOC_AMQP_URL_FILE", str(broker))
    monkeypatch.setenv("SPOC_ROUTING_ADMIN_TOKEN_FILE", str(token))

    settings = RoutingSettings(environment="production")

    assert settings.database_url == STRONG_DATABASE
    assert settings.amqp_url == STRONG_AMQP
    assert settings.admin_token is not None and settings.admin_token.get_secret_value() == "t" * 40


def test_a_setting_given_both_directly_and_as_a_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "url").write_text(STRONG_DATABASE)
    monkeypatch.setenv("SPOC_ROUTING_DATABASE_URL_FILE", str(tmp_path / "url"))
    monkeypatch.setenv("SPOC_ROUTING_DATABASE_URL", "sqlite+aiosqlite:///x")
    with pytest.raises(SettingsError) as refused:
        RoutingSettings()
    assert "both SPOC_ROUTING_DATABASE_URL and SPOC_ROUTING_DATABASE_URL_FILE" in str(
        refused.value.__cause__
    )
    monkeypatch.setenv("SPOC_ROUTING_DATABASE_URL_FILE", str(tmp_path / "absent"))
    monkeypatch.delenv("SPOC_ROUTING_DATABASE_URL")
    with pytest.raises(SettingsError) as unreadable:
        RoutingSettings()
    assert "SPOC_ROUTING_DATABASE_URL_FILE: cannot read" in str(unreadable.value.__cause__)


def test_settings_are_read_from_files_named_like_the_variables_in_the_secrets_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "SPOC_ROUTING_DATABASE_URL").write_text(STRONG_DATABASE + "\n")
    (tmp_path / "SPOC_AMQP_URL").write_text(STRONG_AMQP)
    (tmp_path / "SPOC_ROUTING_METRICS_TOKEN").write_text("m" * 32)
    monkeypatch.setenv("SPOC_SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv("SPOC_ROUTING_DATABASE_URL", raising=False)
    monkeypatch.delenv("SPOC_AMQP_URL", raising=False)

    settings = RoutingSettings(environment="production")

    assert settings.database_url == STRONG_DATABASE
    assert settings.amqp_url == STRONG_AMQP
    assert settings.metrics_token is not None
    assert settings.metrics_token.get_secret_value() == "m" * 32
    # The environment still wins over a file, as it does everywhere else.
    monkeypatch.setenv("SPOC_ROUTING_DATABASE_URL", "sqlite+aiosqlite:///x")
    assert RoutingSettings().database_url == "sqlite+aiosqlite:///x"
    monkeypatch.setenv("SPOC_SECRETS_DIR", str(tmp_path / "absent"))
    with pytest.raises(SettingsError, match=r"SPOC_SECRETS_DIR=.* is not a directory"):
        RoutingSettings()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prefetch", 0),
        ("delivery_limit", 0),
        ("bus", "kafka"),
        ("number_prefix", "sd lower"),
        ("root_path", "desk/"),
        ("root_path", "/desk/"),
        ("forwarded_allow_ips", ""),
    ],
)
def test_nonsense_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        IntakeSettings(database_url="sqlite+aiosqlite:///x", **{field: value})


def test_a_command_names_an_unreadable_settings_file_instead_of_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from spoc.cli import app

    monkeypatch.delenv("SPOC_ROUTING_DATABASE_URL", raising=False)
    monkeypatch.setenv("SPOC_ROUTING_DATABASE_URL_FILE", str(tmp_path / "absent"))
    done = CliRunner().invoke(app, ["migrate", "routing"])
    assert done.exit_code == 2, done.output
    assert "SPOC_ROUTING_DATABASE_URL_FILE: cannot read" in done.output


# The placeholders Spoc publishes: docker-compose.yml's defaults and committed token file, the
# Kubernetes example overlay's passwords and tokens.
PUBLISHED_PASSWORDS = ["rabbitmq-local-only", "intake-local-only", "example-only-change-me"]
PUBLISHED_TOKENS = [
    "metrics-token-for-a-laptop-only-local-only",
    "example-only-metrics-token-change-me-0000",
    "example-only-admin-token-change-me-000000",
    "a-perfectly-long-token-but-CHANGEME-please",
    "a-perfectly-long-token-but-Change-Me-please",
]


@pytest.mark.parametrize("password", PUBLISHED_PASSWORDS)
def test_production_refuses_the_passwords_published_with_spoc(password: str) -> None:
    published_database = f"postgresql+asyncpg://spoc_routing:{password}@db/spoc_routing"
    with pytest.raises(ValidationError, match="DATABASE_URL: the password is a published"):
        RoutingSettings(
            environment="production", database_url=published_database, amqp_url=STRONG_AMQP
        )
    published_broker = f"amqp://spoc:{password}@rabbit/spoc"
    with pytest.raises(ValidationError, match="SPOC_AMQP_URL: the password is a published"):
        RoutingSettings(
            environment="production", database_url=STRONG_DATABASE, amqp_url=published_broker
        )
    # On a laptop they are what the compose file is for.
    RoutingSettings(database_url=published_database, amqp_url=published_broker)


@pytest.mark.parametrize("token", PUBLISHED_TOKENS)
@pytest.mark.parametrize("field", ["admin_token", "metrics_token"])
def test_production_refuses_the_tokens_published_with_spoc(field: str, token: str) -> None:
    strong = {"database_url": STRONG_DATABASE, "amqp_url": STRONG_AMQP}
    with pytest.raises(ValidationError, match=rf"SPOC_ROUTING_{field.upper()}: the token is a"):
        RoutingSettings(environment="production", **strong, **{field: token})
    RoutingSettings(**strong, **{field: token})
    RoutingSettings(environment="production", **strong, **{field: "k3" * 16})


def test_a_token_too_short_to_resist_guessing_is_refused_everywhere() -> None:
    with pytest.raises(ValidationError, match=r"metrics_token\n.*at least 32"):
        SlaSettings(database_url=STRONG_DATABASE, metrics_token="k3" * 15)


def test_a_refused_setting_is_named_without_showing_any_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from spoc.cli import app

    token = "Rq81Tt50x9Lm2Wd7-local-only-Pz63Kc4Hv0"
    database = "postgresql+asyncpg://spoc_routing:Zq7-database-secret-91@db/spoc_routing"
    monkeypatch.setenv("SPOC_ROUTING_ENVIRONMENT", "production")
    monkeypatch.setenv("SPOC_ROUTING_DATABASE_URL", database)
    monkeypatch.setenv("SPOC_AMQP_URL", "amqp://spoc:Xb4-broker-secret-77@rabbit/spoc")
    monkeypatch.setenv("SPOC_ROUTING_METRICS_TOKEN", token)
    done = CliRunner().invoke(app, ["migrate", "routing"])

    assert done.exit_code == 2, done.output
    assert "SPOC_ROUTING_METRICS_TOKEN: the token is a published placeholder" in done.output
    for secret in (
        "Zq7-database-secret-91",
        "Xb4-broker-secret-77",
        "Rq81Tt50x9Lm2Wd7",
        "Pz63Kc4Hv0",
    ):
        # No piece of it either: pydantic's input_value would show a long value's head and tail.
        pieces = {secret[i : i + 8] for i in range(len(secret) - 7)}
        leaked = sorted(p for p in pieces if p in done.output)
        assert not leaked, f"the error output shows {leaked}:\n{done.output}"
    # Nor the pydantic error itself, which the settings are told to keep the input out of.
    with pytest.raises(ValidationError) as refused:
        RoutingSettings()
    assert "Zq7-database" not in str(refused.value) and "input_value" not in str(refused.value)
