"""Offline checks of the deployment files: they must be right without a Docker engine or a cluster.

The compose file, the Dockerfile, the Kubernetes manifests, Prometheus' config and rules and the
Grafana dashboard are checked against the code they drive: the `spoc` command line, each
service's settings class and the metrics the code registers.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from pydantic import AliasChoices, AliasPath, ValidationError

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_DIR = DEPLOY / "prometheus"
GRAFANA_DIR = DEPLOY / "grafana"
K8S_BASE = DEPLOY / "k8s" / "base"
K8S_OVERLAY = DEPLOY / "k8s" / "overlays" / "example"
VENV_BIN = Path(sys.executable).parent

SERVICES = ("intake", "routing", "sla", "notify")
SETTINGS_CLASSES = {
    "intake": ("spoc_intake.settings", "IntakeSettings"),
    "routing": ("spoc_routing.settings", "RoutingSettings"),
    "sla": ("spoc_sla.settings", "SlaSettings"),
    "notify": ("spoc_notify.settings", "NotifySettings"),
}
SERVICE_COMMANDS = ("serve", "migrate")


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def parse_with_cli(args: Sequence[str]) -> Any:
    """Parse `spoc <args>` exactly as the container would, down to the leaf command.

    A group's make_context parses only the group's own options, so each subcommand is resolved
    and parsed in turn; the CLI raises a usage error on anything it would refuse. Duck-typed:
    newer Typer releases carry their own copy of click, so isinstance(click.Group) does not hold.
    """
    from spoc.cli import app

    command = typer.main.get_command(app)
    ctx = command.make_context("spoc", list(args), resilient_parsing=False)
    while hasattr(command, "resolve_command") and hasattr(command, "commands"):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        assert rest, f"`spoc {' '.join(args)}` names no subcommand"
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        ctx = sub.make_context(name, rest, parent=ctx, resilient_parsing=False)
        command = sub
    return ctx


def cli_errors() -> tuple[type[Exception], ...]:
    """click's ClickException, and the one of the click copy inside newer Typer releases."""
    found = []
    for module in ("click.exceptions", "typer._click.exceptions"):
        try:
            found.append(importlib.import_module(module).ClickException)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def assert_cli_accepts(args: Sequence[str], where: str) -> None:
    command_line = f"spoc {' '.join(args)}"
    try:
        parse_with_cli(args)
    except cli_errors() as error:
        message = error.format_message()  # type: ignore[attr-defined]
        pytest.fail(f"{where}: `{command_line}` is refused by the CLI: {message}")


def settings_class(service: str) -> type[Any]:
    module_name, class_name = SETTINGS_CLASSES[service]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        pytest.fail(f"{service} is deployed but {module_name} cannot be imported: {error}")
    cls = getattr(module, class_name, None)
    assert cls is not None, f"{module_name} has no {class_name}"
    return cls  # type: ignore[no-any-return]


def accepted_env_names(cls: type[Any]) -> set[str]:
    """Environment variable names (upper-cased) that set a field of a pydantic-settings class."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.add(f"{prefix}{field.alias or field_name}".upper())
        elif isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names.update(c.upper() for c in alias.choices if isinstance(c, str))
        elif isinstance(alias, AliasPath) and isinstance(alias.path[0], str):
            names.add(alias.path[0].upper())
    return names


def construct_settings(
    monkeypatch: pytest.MonkeyPatch, service: str, env: Mapping[str, str]
) -> Any:
    """Build the service's settings from exactly `env` (no SPOC_* leaking in from the runner)."""
    cls = settings_class(service)
    for name in list(os.environ):
        if name.upper().startswith("SPOC_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        return cls()
    except ValidationError as error:
        pytest.fail(f"{service}: {cls.__name__} refuses this environment:\n{error}")


def check_env_against_settings(
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    env: Mapping[str, str],
    where: str,
    files: Mapping[str, str] | None = None,
    mounted: Mapping[str, Path] | None = None,
) -> Any:
    """`files`: the settings the container gets as files in SPOC_SECRETS_DIR (name → value);
    they are written to a directory of that name for the settings to read, as in the pod.
    `mounted`: the files <NAME>_FILE variables may name (path in the container → here)."""
    files, mounted = files or {}, mounted or {}
    accepted = accepted_env_names(settings_class(service))
    accepted |= {f"{name}_FILE" for name in accepted} | {"SPOC_SECRETS_DIR"}
    unknown = sorted(
        n for n in [*env, *files] if n.upper().startswith("SPOC_") and n.upper() not in accepted
    )
    assert not unknown, (
        f"{where}: {service}'s settings do not read {unknown}; they read {sorted(accepted)}"
    )
    prefix = f"SPOC_{service.upper()}_"
    foreign = sorted(
        n
        for n in [*env, *files]
        if any(n.startswith(f"SPOC_{o.upper()}_") for o in SERVICES if o != service)
    )
    assert not foreign, f"{where}: {service} is given another service's settings {foreign}"
    assert f"{prefix}DATABASE_URL" in {**env, **files}, f"{where}: no {prefix}DATABASE_URL"
    env = dict(env)
    for name, path in env.items():
        if name.endswith("_FILE") and name.startswith("SPOC_"):
            assert path in mounted, f"{where}: {name}={path}, but no secret is mounted there"
            env[name] = str(mounted[path])
    if files:
        assert "SPOC_SECRETS_DIR" in env, f"{where}: secret files but no SPOC_SECRETS_DIR"
        directory = Path(tempfile.mkdtemp(prefix="spoc-secrets-"))
        for name, value in files.items():
            (directory / name).write_text(value + "\n")
        env["SPOC_SECRETS_DIR"] = str(directory)
    settings = construct_settings(monkeypatch, service, env)
    if settings.environment == "production":
        assert "guest:guest@" not in settings.amqp_url, f"{where}: guest account in production"
    assert settings.bus == "amqp", f"{where}: containers run on RabbitMQ, not the memory bus"
    return settings


def service_command(args: Sequence[str] | None) -> tuple[str, str] | None:
    """('serve'|'migrate', service) for a container's command, else None."""
    if not args or args[0] not in SERVICE_COMMANDS:
        return None
    assert len(args) >= 2, f"`spoc {' '.join(args)}` names no service"
    return args[0], args[1]


# ---- compose ---------------------------------------------------------------------------------

_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution (the subset the spec defines)."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"] or ""
        present = name in env
        value = env.get(name, "")
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if present else arg
        if op in (":?", "?"):
            if (op == ":?" and not value) or not present:
                raise ValueError(f"compose requires {name}: {arg}")
            return value
        if op == ":+":
            return arg if value else ""
        if op == "+":
            return arg if present else ""
        return value

    return _INTERPOLATION.sub(replace, value)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(n, env) for n in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


@cache
def compose() -> dict[str, Any]:
    """The compose file as Compose sees it with only the required variables set (the secrets
    and the access-key pair, which have no default): every other default applies."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(raw, dict) and isinstance(raw.get("services"), dict)
    return dict(interpolate_tree(raw, COMPOSE_REQUIRED))


# The secrets compose requires (no default: a published one would be everyone's).
COMPOSE_SECRET_VARIABLES = (
    "RABBITMQ_PASSWORD",
    "POSTGRES_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    *(f"SPOC_{s.upper()}_DB_PASSWORD" for s in SERVICES),
    "SPOC_METRICS_TOKEN_FILE",
)


def _required_compose_variables() -> dict[str, str]:
    """What an operator sets, as deploy/compose/generate-env makes it: random passwords, a
    token file, the access-key pair."""
    import secrets

    from spoc_platform.sealing import generate_key_pair

    pair = generate_key_pair()
    token_file = Path(tempfile.mkdtemp(prefix="spoc-compose-")) / "metrics-token"
    token_file.write_text(secrets.token_hex(32) + "\n")
    passwords = {name: secrets.token_hex(24) for name in COMPOSE_SECRET_VARIABLES}
    return {
        **passwords,
        "SPOC_METRICS_TOKEN_FILE": str(token_file),
        "SPOC_INTAKE_ACCESS_KEY_RECIPIENT": pair.recipient,
        "SPOC_NOTIFY_ACCESS_KEY_SECRET": pair.secret,
    }


COMPOSE_REQUIRED = _required_compose_variables()


def compose_services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def compose_env(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {
        str(k): "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        for k, v in env.items()
    }


def compose_secrets(service: Mapping[str, Any]) -> dict[str, Path]:
    """The Compose secrets a service gets: path in the container → the file here."""
    defined = compose().get("secrets", {})
    mounted: dict[str, Path] = {}
    for entry in service.get("secrets", []):
        name, target = (
            (entry, None) if isinstance(entry, str) else (entry["source"], entry.get("target"))
        )
        assert name in defined, f"secret {name} is not defined at the top level"
        assert "file" in defined[name], f"secret {name}: a file, so it exists before `up`"
        container_path = (
            target if target and target.startswith("/") else f"/run/secrets/{target or name}"
        )
        mounted[container_path] = ROOT / defined[name]["file"]
    return mounted


def compose_command(service: Mapping[str, Any]) -> list[str] | None:
    command = service.get("command")
    if command is None:
        return None
    assert isinstance(command, list), "use the exec (list) form for commands: no shell in between"
    return [str(c) for c in command]


def spoc_compose_services() -> list[str]:
    return sorted(n for n, s in compose_services().items() if service_command(compose_command(s)))


# ---- kubernetes ------------------------------------------------------------------------------


def kustomize_build(directory: Path) -> list[dict[str, Any]] | None:
    """`kubectl kustomize` / `kustomize build` output, or None when neither tool is installed."""
    if shutil.which("kustomize"):
        argv = ["kustomize", "build", str(directory)]
    elif shutil.which("kubectl"):
        argv = ["kubectl", "kustomize", str(directory)]
    else:
        return None
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stderr}"
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def raw_resources(directory: Path) -> list[dict[str, Any]]:
    """The base's resources without kustomize (anchors resolved by PyYAML, names unhashed)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        if path.is_file():
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


@cache
def rendered_overlay() -> tuple[dict[str, Any], ...] | None:
    docs = kustomize_build(K8S_OVERLAY)
    return None if docs is None else tuple(docs)


def base_resources() -> list[dict[str, Any]]:
    return kustomize_build(K8S_BASE) or raw_resources(K8S_BASE)


def pod_spec(resource: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = resource.get("kind")
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}:
        return dict(resource["spec"]["template"]["spec"])
    if kind == "CronJob":
        return dict(resource["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    if kind == "Pod":
        return dict(resource["spec"])
    return None


def containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("initContainers", "containers"):
        for container in spec.get(kind) or []:
            yield kind, container


def memory_bytes(quantity: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return float(quantity[: -len(unit)]) * factor
    return float(quantity)


# ---- metrics -----------------------------------------------------------------------------------

RABBITMQ_QUEUE_SERIES = {
    # /metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count
    "rabbitmq_detailed_queue_messages_ready",
    "rabbitmq_detailed_queue_messages_unacked",
    "rabbitmq_detailed_queue_messages",
    "rabbitmq_detailed_queue_process_reductions_total",
    "rabbitmq_detailed_queue_consumers",
}


@cache
def registered_series() -> frozenset[str]:
    """Every sample name Spoc's code can export, from the metric objects its modules register."""
    from prometheus_client import REGISTRY

    for module in ("spoc_platform.metrics", *(f"spoc_{s}.metrics" for s in SERVICES)):
        importlib.import_module(module)
    # No `_created` series: spoc_platform.metrics turns them off.
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("", "_sum", "_count"),
        "gauge": ("",),
    }
    names: set[str] = set()
    for family in REGISTRY.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return frozenset(names)


def metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(re.findall(r"\b((?:spoc|rabbitmq)_[a-z0-9_]+)\b", without_strings))


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboards() -> list[tuple[Path, dict[str, Any]]]:
    paths = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
    return [(p, json.loads(p.read_text())) for p in paths]


def dashboard_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs() -> list[tuple[str, str]]:
    return [
        (f"{path.name}: {panel.get('title')}", target["expr"])
        for path, dashboard in dashboards()
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
        if "expr" in target
    ]


# ================================================================================================
# docker-compose.yml
# ================================================================================================


def test_compose_file_matches_the_compose_specification() -> None:
    checker = VENV_BIN / "check-jsonschema"
    assert checker.exists(), f"{checker} is missing: check-jsonschema is a dev dependency"
    done = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_runs_each_service_once_after_its_own_migrations() -> None:
    services = compose_services()
    seen: dict[tuple[str, str], str] = {}
    for name, service in services.items():
        parsed = service_command(compose_command(service))
        if parsed is None:
            continue
        verb, target = parsed
        assert target in SERVICES, f"{name}: `{verb} {target}` names no Spoc service"
        assert (verb, target) not in seen, f"{name} and {seen[(verb, target)]} both {verb} {target}"
        seen[(verb, target)] = name
    for target in SERVICES:
        assert ("serve", target) in seen, f"no compose service serves {target}"
        assert ("migrate", target) in seen, f"no compose service migrates {target}"
        serve, migrate = services[seen[("serve", target)]], seen[("migrate", target)]
        depends = serve.get("depends_on") or {}
        assert isinstance(depends, dict), f"{target}: depends_on needs conditions (long form)"
        assert depends.get(migrate, {}).get("condition") == "service_completed_successfully", (
            f"{target} must wait for {migrate} with condition service_completed_successfully"
        )
        for infrastructure in ("rabbitmq", "postgres"):
            assert depends.get(infrastructure, {}).get("condition") == "service_healthy", (
                f"{target} must wait for {infrastructure} to be healthy"
            )
        assert services[migrate].get("restart", "no") == "no", f"{migrate} is a one-shot"
        migrate_depends = services[migrate].get("depends_on") or {}
        assert "postgres" in migrate_depends, f"{migrate} needs postgres"


@pytest.mark.parametrize("name", spoc_compose_services())
def test_compose_command_is_accepted_by_the_cli(name: str) -> None:
    command = compose_command(compose_services()[name])
    assert command is not None
    assert_cli_accepts(command, f"docker-compose.yml service {name}")


@pytest.mark.parametrize("name", spoc_compose_services())
def test_compose_environment_is_read_by_the_service_settings(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = compose_services()[name]
    parsed = service_command(compose_command(service))
    assert parsed is not None
    _, target = parsed
    env = compose_env(service)
    settings = check_env_against_settings(
        monkeypatch, target, env, f"docker-compose.yml {name}", mounted=compose_secrets(service)
    )
    # One database and one user per service: spoc_<svc> on both counts.
    url = urlsplit(settings.database_url)
    assert url.scheme == "postgresql+asyncpg", f"{name}: {url.scheme}"
    assert url.hostname == "postgres" and url.path == f"/spoc_{target}", f"{name}: {url.path}"
    assert url.username == f"spoc_{target}", f"{name}: database user {url.username}"
    assert urlsplit(settings.amqp_url).hostname == "rabbitmq"
    assert urlsplit(settings.amqp_url).path == "/spoc", "services use the vhost `spoc`"


def test_compose_serving_services_are_healthchecked_on_readyz() -> None:
    for name, service in compose_services().items():
        parsed = service_command(compose_command(service))
        if parsed is None or parsed[0] != "serve":
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck"
        text = " ".join(test) if isinstance(test, list) else str(test)
        assert "/readyz" in text, f"{name}'s healthcheck does not probe /readyz: {text}"
        assert "curl" not in text and "wget" not in text, f"{name}: the slim image has no {text}"
        command = compose_command(service)
        assert command is not None
        port = command[command.index("--port") + 1] if "--port" in command else "8000"
        assert f":{port}/readyz" in text, f"{name} listens on {port} but is probed elsewhere"


def test_compose_database_users_match_the_postgres_init_script() -> None:
    services = compose_services()
    postgres = services["postgres"]
    postgres_env = compose_env(postgres)
    mounts = [str(v) for v in postgres.get("volumes", [])]
    init = [m for m in mounts if "/docker-entrypoint-initdb.d" in m]
    assert init, "postgres mounts no init script"
    script_path = ROOT / init[0].split(":", 1)[0]
    script = script_path.read_text()
    assert os.access(script_path, os.X_OK), f"{script_path} must be executable"
    for target in SERVICES:
        assert re.search(rf"^create_service_database {target}\b", script, re.M), (
            f"{script_path.name} does not create {target}'s database"
        )
        serve = next(
            s for s in services.values() if service_command(compose_command(s)) == ("serve", target)
        )
        url = urlsplit(compose_env(serve)[f"SPOC_{target.upper()}_DATABASE_URL"])
        assert postgres_env.get(f"SPOC_{target.upper()}_DB_PASSWORD") == url.password, (
            f"{target}'s password in its DATABASE_URL differs from the one postgres creates"
        )
    assert len(
        {
            compose_env(s).get(k)
            for s in services.values()
            for k in compose_env(s)
            if k.endswith("_DATABASE_URL")
        }
    ) == len(SERVICES), "a database URL is shared"


def test_compose_uses_no_guest_account_and_has_no_default_secrets() -> None:
    text = json.dumps(compose())
    assert "guest:guest" not in text
    rabbit = compose_env(compose_services()["rabbitmq"])
    assert rabbit.get("RABBITMQ_DEFAULT_USER") not in (None, "", "guest")
    assert rabbit.get("RABBITMQ_DEFAULT_VHOST") == "spoc"
    raw = COMPOSE_FILE.read_text()
    for variable in COMPOSE_SECRET_VARIABLES:
        uses = re.findall(rf"\$\{{{variable}(:?[-?+]?)[^}}]*\}}", raw)
        assert uses, f"{variable} is not taken from the environment"
        assert set(uses) == {":?"}, f"{variable} must be required (${{{variable}:?…}}): {uses}"
        # And Compose indeed refuses to start without it.
        with pytest.raises(ValueError, match=f"compose requires {variable}"):
            interpolate_tree(
                yaml.safe_load(raw),
                {k: v for k, v in COMPOSE_REQUIRED.items() if k != variable},
            )
    # No secret is published in the repository for compose to fall back on.
    assert not list((DEPLOY / "compose" / "secrets").glob("*local-only*"))


def test_compose_generate_env_makes_every_required_variable(tmp_path: Path) -> None:
    """deploy/compose/generate-env, run in a copy of the layout it expects, writes a value for
    every variable compose requires, none weak, and a token file the containers can read."""
    script = tmp_path / "deploy" / "compose" / "generate-env"
    script.parent.mkdir(parents=True)
    (script.parent / "secrets").mkdir()
    shutil.copy2(DEPLOY / "compose" / "generate-env", script)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    written = dict(
        line.split("=", 1) for line in (tmp_path / ".env").read_text().splitlines() if line
    )
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE_FILE.read_text()))
    assert required <= set(written), f"generate-env leaves out {sorted(required - set(written))}"
    from spoc_platform.weak_secrets import weak_credentials, weak_token

    for name in COMPOSE_SECRET_VARIABLES:
        if name != "SPOC_METRICS_TOKEN_FILE":
            assert weak_credentials(f"x://u:{written[name]}@h", password_required=True) is None
    token = tmp_path / written["SPOC_METRICS_TOKEN_FILE"]
    assert token.stat().st_mode & 0o777 == 0o644
    assert weak_token(token.read_text().strip()) is None and len(token.read_text().strip()) >= 32
    # Run twice, it keeps the first secrets: the databases were created with them.
    again = subprocess.run([str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode != 0 and ".env exists" in again.stderr


def test_forwarded_headers_are_believed_from_no_one_by_default() -> None:
    for name, service in compose_services().items():
        allowed = compose_env(service).get("SPOC_FORWARDED_ALLOW_IPS")
        assert allowed in (None, "127.0.0.1"), f"compose {name} trusts {allowed} by default"
    for source in K8S_BASE.glob("*.yaml"):
        text = source.read_text()
        if source.name == "intake.yaml":
            [value] = re.findall(r"SPOC_FORWARDED_ALLOW_IPS\n\s*value: \"([^\"]*)\"", text)
            assert value == "127.0.0.1", f"the base's intake trusts {value}: set it in an overlay"
        else:
            # Only intake is behind the ingress: nothing else may believe forwarded headers.
            assert "SPOC_FORWARDED_ALLOW_IPS" not in text, source.name


def test_compose_notify_sends_to_the_mail_catcher() -> None:
    services = compose_services()
    notify = next(
        s for s in services.values() if service_command(compose_command(s)) == ("serve", "notify")
    )
    smtp = urlsplit(compose_env(notify)["SPOC_NOTIFY_SMTP_URL"])
    assert smtp.hostname in services, f"SMTP host {smtp.hostname} is no compose service"
    assert "mailpit" in str(services[str(smtp.hostname)].get("image", ""))


def test_compose_mounted_files_exist() -> None:
    enabled = DEPLOY / "compose" / "rabbitmq" / "enabled_plugins"
    assert "rabbitmq_prometheus" in enabled.read_text()
    for name, service in compose_services().items():
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                source = volume.split(":", 1)[0]
            else:
                source = volume.get("source")
            if source and source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
        for path in compose_secrets(service).values():
            assert path.is_file(), f"{name}'s secret {path} is missing"


def test_metrics_are_scraped_with_the_token_the_services_read() -> None:
    services = compose_services()
    prometheus_secrets = compose_secrets(services["prometheus"])
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    spoc = next(job for job in config["scrape_configs"] if job["job_name"] == "spoc")
    credentials = spoc["authorization"]["credentials_file"]
    assert spoc["authorization"].get("type", "Bearer") == "Bearer"
    assert credentials in prometheus_secrets, f"Prometheus has nothing at {credentials}"
    for target in SERVICES:
        serve = next(
            s for s in services.values() if service_command(compose_command(s)) == ("serve", target)
        )
        token_file = compose_env(serve).get(f"SPOC_{target.upper()}_METRICS_TOKEN_FILE")
        assert token_file is not None, f"{target} is given no metrics token"
        assert compose_secrets(serve)[token_file] == prometheus_secrets[credentials], target
    cluster = yaml.safe_load((PROMETHEUS_DIR / "kubernetes-scrape.yml").read_text())
    in_cluster = next(job for job in cluster["scrape_configs"] if job["job_name"] == "spoc")
    assert in_cluster["authorization"]["credentials_file"], "the cluster's scrape sends no token"


# ================================================================================================
# Dockerfile
# ================================================================================================


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines()]
    instructions = []
    for line in lines:
        if line and not line.startswith("#"):
            op, _, arg = line.partition(" ")
            instructions.append((op.upper(), arg.strip()))
    return instructions


def test_dockerfile_default_command_and_entrypoint() -> None:
    instructions = dockerfile_instructions()
    final_stage = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    entrypoint = [json.loads(arg) for op, arg in final_stage if op == "ENTRYPOINT"]
    cmd = [json.loads(arg) for op, arg in final_stage if op == "CMD"]
    assert entrypoint == [["spoc"]]
    assert len(cmd) == 1, "one default CMD, in exec (JSON) form"
    assert_cli_accepts(cmd[0], "Dockerfile CMD")
    users = [arg for op, arg in final_stage if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image runs as non-root"


def test_dockerfile_installs_the_locked_workspace_with_the_pinned_uv() -> None:
    instructions = dockerfile_instructions()
    runs = " ".join(arg for op, arg in instructions if op == "RUN")
    assert "pip install uv==" in runs
    setup_uv = re.search(r"UV_VERSION=(\S+)", (ROOT / "scripts" / "setup").read_text())
    assert setup_uv and f"uv=={setup_uv[1]}" in runs, "the image's uv differs from scripts/setup's"
    assert re.search(r"uv sync --locked --no-dev\b", runs)
    bases = [arg.split()[0] for op, arg in instructions if op == "FROM"]
    assert set(bases) == {"${PYTHON_IMAGE}"}, f"every stage starts from one base: {bases}"
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim-bookworm") in instructions
    copied = [
        src
        for op, arg in instructions
        if op == "COPY" and "--from" not in arg
        for src in arg.split()[:-1]
    ]
    for source in copied:
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
    # Every workspace member's pyproject is in the dependency layer, or `uv sync --locked` fails.
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for member in project["tool"]["uv"]["workspace"]["members"]:
        pyproject = f"{member}/pyproject.toml"
        assert pyproject in copied, f"the Dockerfile's dependency layer lacks {pyproject}"
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore, ".dockerignore is an allow-list"
    for top in {Path(s).parts[0].rstrip("/") for s in copied}:
        assert f"!{top}" in ignore or f"!{top}/" in ignore, f".dockerignore leaves out {top}"


# ================================================================================================
# Prometheus and Grafana
# ================================================================================================


def test_prometheus_scrapes_every_service_and_rabbitmq() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    targets: dict[str, set[str]] = {}
    detailed_families: set[str] = set()
    for job in config["scrape_configs"]:
        path = job.get("metrics_path", "/metrics")
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                targets.setdefault(target, set()).add(path)
        if path == "/metrics/detailed":
            detailed_families.update(job.get("params", {}).get("family", []))
            assert job.get("params", {}).get("vhost") == ["spoc"]
    for service in SERVICES:
        assert "/metrics" in targets.get(f"{service}:8000", set()), f"{service} is not scraped"
    assert {"/metrics", "/metrics/detailed"} <= targets.get("rabbitmq:15692", set())
    assert {"queue_coarse_metrics", "queue_consumer_count"} <= detailed_families
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS_DIR / rule_file).is_file()
    # And in compose the scrape targets are real services on the port they serve.
    services = compose_services()
    for service in SERVICES:
        assert service in services and service_command(compose_command(services[service])) == (
            "serve",
            service,
        ), f"the scrape target {service}:8000 is not the compose service serving {service}"


def test_alert_rules_cover_the_agreed_conditions() -> None:
    rules = {r["alert"]: r for r in alert_rules() if "alert" in r}
    wanted = {
        "dead letters": r"\.dead",
        "queue depth": r"rabbitmq_detailed_queue_messages_ready",
        "no consumers": r"rabbitmq_detailed_queue_consumers",
        "outbox age": r"spoc_outbox_oldest_pending_age_seconds\)?\s*>\s*60",
        "bus disconnected": r"spoc_bus_connected",
        "service down": r'up\{job="spoc"\}',
        "5xx rate": r'kind="server"',
        "handler retries": r'outcome="retry"',
    }
    for topic, pattern in wanted.items():
        assert any(re.search(pattern, r["expr"]) for r in rules.values()), f"no alert on {topic}"
    for name, rule in rules.items():
        assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, name
        assert rule.get("annotations", {}).get("summary"), f"{name} has no summary"


def test_alert_rules_are_unit_tested() -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts.test.yml").read_text())
    tested = {case["alertname"] for t in tests["tests"] for case in t.get("alert_rule_test", [])}
    assert len(tested) >= 3
    assert tested <= {r["alert"] for r in alert_rules() if "alert" in r}


RUNBOOKS = ROOT / "docs" / "runbooks.md"


def markdown_anchor(heading: str) -> str:
    """The anchor GitHub, GitLab and most renderers give a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_sections() -> dict[str, str]:
    sections = re.split(r"^## ", RUNBOOKS.read_text(encoding="utf-8"), flags=re.MULTILINE)[1:]
    return {markdown_anchor(s.splitlines()[0]): s for s in sections}


UPGRADE_RUNBOOKS = {
    "queues-from-the-first-release",
    "upgrading-settings-this-release-refuses-or-changes",
}


def test_every_alert_links_a_runbook_section_saying_what_it_means_what_to_look_at_and_do() -> None:
    sections = runbook_sections()
    alerts = [r for r in alert_rules() if "alert" in r]
    for rule in alerts:
        url = rule.get("annotations", {}).get("runbook_url", "")
        path, _, anchor = url.partition("#")
        assert (ROOT / path).resolve() == RUNBOOKS, f"{rule['alert']}: runbook_url {url!r}"
        assert anchor in sections, f"{rule['alert']}: no section #{anchor} in docs/runbooks.md"
        for part in ("**Means.**", "**Look at", "Do.**"):
            assert part in sections[anchor], f"runbook #{anchor} lacks {part}"
    # No runbook for an alert that no longer exists, and no link inside them that goes nowhere.
    # Every section is an alert's, but for the upgrade steps the topology command points at.
    assert set(sections) - UPGRADE_RUNBOOKS == {r["alert"].lower() for r in alerts}
    links = re.findall(r"\]\(#([^)]+)\)", RUNBOOKS.read_text(encoding="utf-8"))
    assert links and set(links) <= set(sections)


def relabelled(job: Mapping[str, Any], address: str) -> str:
    """The `instance` Prometheus gives a static target of `job` (replace actions only)."""
    labels = {"__address__": address, "instance": address}
    for rule in job.get("relabel_configs", []):
        assert rule.get("action", "replace") == "replace", rule
        value = rule.get("separator", ";").join(labels.get(n, "") for n in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if match:
            labels[rule["target_label"]] = match.expand(
                rule.get("replacement", "$1").replace("$", "\\")
            )
    return labels["instance"]


def test_services_on_one_host_stay_separate_targets() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        instances = {relabelled(job, f"127.0.0.1:{port}") for port in (8000, 8001, 8002, 8003)}
        assert len(instances) == 4, f"job {job['job_name']} merges targets on one host"


def test_a_kubernetes_prometheus_gets_the_jobs_and_parameters_the_rules_select_on() -> None:
    compose = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())["scrape_configs"]
    cluster = yaml.safe_load((PROMETHEUS_DIR / "kubernetes-scrape.yml").read_text())
    wanted = {job["job_name"]: job for job in compose}
    given = {job["job_name"]: job for job in cluster["scrape_configs"]}
    assert set(given) == set(wanted)
    for name, job in wanted.items():
        assert given[name].get("metrics_path", "/metrics") == job.get("metrics_path", "/metrics")
        assert given[name].get("params") == job.get("params"), name
    # Every job an alert selects on exists under that name.
    for rule in alert_rules():
        for selector in re.findall(r'job(=~?)"([^"]+)"', rule["expr"]):
            operator, value = selector
            pattern = value if operator == "=~" else re.escape(value)
            assert any(re.fullmatch(pattern, name) for name in given), rule["expr"]
    # The spoc job keeps exactly the kustomize base's service pods, one instance per pod.
    keep = next(
        r
        for r in given["spoc"]["relabel_configs"]
        if r.get("action") == "keep"
        and r["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
    )
    scraped = set()
    for resource in base_resources():
        if resource.get("kind") != "Deployment":
            continue
        template = resource["spec"]["template"]["metadata"]
        name = template["labels"]["app.kubernetes.io/name"]
        assert template["annotations"]["prometheus.io/scrape"] == "true", name
        if re.fullmatch(keep["regex"], name):
            scraped.add(name)
    assert scraped == {f"spoc-{service}" for service in SERVICES}
    assert any(
        r.get("target_label") == "instance"
        and "__meta_kubernetes_pod_name" in r.get("source_labels", [])
        for r in given["spoc"]["relabel_configs"]
    )


def test_alerts_and_dashboard_use_series_that_exist() -> None:
    known = registered_series() | RABBITMQ_QUEUE_SERIES
    exprs = [(f"alert {r.get('alert') or r.get('record')}", r["expr"]) for r in alert_rules()]
    exprs += dashboard_exprs()
    assert exprs
    for where, expr in exprs:
        unknown = metric_names(expr) - known
        assert not unknown, f"{where} uses series no code exports: {sorted(unknown)}"


def test_grafana_dashboard_is_provisioned_against_the_provisioned_datasource() -> None:
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    uids = {d["uid"] for d in datasources}
    provider = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "spoc.yml").read_text()
    )["providers"][0]
    mounts = [str(v) for v in compose_services()["grafana"]["volumes"]]
    assert any(
        m.startswith("./deploy/grafana/dashboards:" + provider["options"]["path"]) for m in mounts
    ), "Grafana's dashboard folder is not where the provider looks"
    found = dashboards()
    assert found
    for path, dashboard in found:
        ids = [p["id"] for p in dashboard_panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in dashboard_panels(dashboard):
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] in uids, f"{path.name}: {panel['title']}"
    everything = " ".join(expr for _, expr in dashboard_exprs())
    for series in (
        "rabbitmq_detailed_queue_messages",
        "rabbitmq_detailed_queue_consumers",
        "spoc_outbox_pending",
        "spoc_outbox_oldest_pending_age_seconds",
        "spoc_events_consumed_total",
        "spoc_event_handler_duration_seconds_bucket",
        "spoc_http_requests_total",
        "spoc_http_request_errors_total",
        "spoc_http_request_duration_seconds_bucket",
        "spoc_intake_tickets_created_total",
        "spoc_routing_tickets_routed_total",
        "spoc_routing_assignment_requests_total",
        "spoc_routing_escalation_requests_total",
    ):
        assert series in everything, f"the dashboard shows nothing of {series}"


# On PATH (Debian package `prometheus`), or unpacked into the repo's .tools/bin by a CI script.
PROMTOOL = shutil.which("promtool") or (
    str(ROOT / ".tools" / "bin" / "promtool")
    if (ROOT / ".tools" / "bin" / "promtool").exists()
    else None
)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool absent (Debian package prometheus)")
def test_promtool_accepts_config_rules_rule_tests_and_dashboard_queries(tmp_path: Path) -> None:
    assert PROMTOOL is not None

    def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> None:
        done = subprocess.run(
            [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"

    # The config names the token file Compose mounts (/run/secrets/...), and promtool reads
    # every file a config names: check a copy naming a token file that exists here.
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    token_files = 0
    for job in config["scrape_configs"]:
        if "credentials_file" in job.get("authorization", {}):
            token = tmp_path / f"{job['job_name']}-token"
            token.write_text("a-token-for-promtool\n")
            job["authorization"]["credentials_file"] = str(token)
            token_files += 1
    assert token_files, "the config names no token file: is /metrics scraped without one?"
    # Paths in the config are relative to it: the rules stay where they are.
    config["rule_files"] = [str(PROMETHEUS_DIR / f) for f in config.get("rule_files", [])]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    promtool("check", "rules", "alerts.yml")
    promtool("test", "rules", "alerts.test.yml")
    # Grafana's queries must parse too: wrap each as a recording rule and let promtool parse it.
    rules = [
        {
            "record": f"spoc:dashboard_query:{i}",
            "expr": expr.replace("$__rate_interval", "1m").replace("$service", ".*"),
        }
        for i, (_, expr) in enumerate(dashboard_exprs())
    ]
    (tmp_path / "dashboard.rules.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    promtool("check", "rules", "dashboard.rules.yml", cwd=tmp_path)


# ================================================================================================
# Kubernetes (kustomize)
# ================================================================================================


def test_every_kubernetes_file_parses() -> None:
    files = sorted((DEPLOY / "k8s").rglob("*.yaml"))
    assert files
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert docs, f"{path} is empty"
        for doc in docs:
            if path.name == "desk.yaml":
                continue
            assert "apiVersion" in doc and "kind" in doc, f"{path}: not a Kubernetes object"


def test_kustomize_base_carries_no_secrets() -> None:
    resources = base_resources()
    assert not [r for r in resources if r["kind"] == "Secret"], "Secrets belong in an overlay"
    kustomization = yaml.safe_load((K8S_BASE / "kustomization.yaml").read_text())
    assert "secretGenerator" not in kustomization


def desk_model(service: str) -> type[Any] | None:
    """The pydantic model of a service's desk section (spoc_<svc>.desk.<Svc>Desk), if it has one."""
    try:
        module = importlib.import_module(f"spoc_{service}.desk")
    except ModuleNotFoundError:
        return None
    return getattr(module, f"{service.capitalize()}Desk", None)


def check_desk_file(path: Path) -> None:
    from spoc_platform.desk_config import load_section

    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path}: the top level must be a mapping of sections"
    unknown = set(document) - set(SERVICES)
    assert not unknown, f"{path}: unknown sections {unknown}"
    for section in document:
        model = desk_model(section)
        assert model is not None, f"{path}: no service reads section {section!r}"
        load_section(path, section, model)


def test_desk_files_given_to_the_containers_are_valid() -> None:
    check_desk_file(K8S_BASE / "desk.yaml")
    for name in spoc_compose_services():
        service = compose_services()[name]
        desk = compose_env(service).get("SPOC_DESK_CONFIG")
        if not desk:
            continue
        sources = [
            str(v).split(":")[0]
            for v in service.get("volumes", [])
            if str(v).split(":")[1:2] == [desk]
        ]
        assert sources, f"{name}: SPOC_DESK_CONFIG={desk} but nothing is mounted there"
        check_desk_file(ROOT / sources[0])


def operator_secrets(values: Mapping[str, str]) -> dict[str, str]:
    """`values` with every "example-only..." placeholder replaced by a secret of one's own."""
    return {
        name: re.sub(r"example-only[A-Za-z0-9-]*", "k3" * 20, value)
        for name, value in values.items()
    }


@pytest.mark.parametrize("source", ["base", "overlay"])
def test_kubernetes_workloads(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Containers' commands, probes, limits and environment; a Service, PDB, ScaledObject each."""
    if source == "base":
        resources = base_resources()
    else:
        rendered = rendered_overlay()
        if rendered is None:
            pytest.skip("neither kubectl nor kustomize is installed to render the overlay")
        resources = list(rendered)

    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for resource in resources:
        by_kind.setdefault(resource["kind"], {})[resource["metadata"]["name"]] = resource

    def lookup(kind: str, ref: Mapping[str, Any]) -> str:
        obj = by_kind.get(kind, {}).get(ref["name"])
        assert obj is not None, f"{source}: {kind} {ref['name']} is referenced but not defined"
        if kind == "Secret":
            if ref["key"] in obj.get("stringData", {}):
                return str(obj["stringData"][ref["key"]])
            assert ref["key"] in obj.get("data", {}), f"{kind} {ref['name']} lacks {ref['key']}"
            return base64.b64decode(obj["data"][ref["key"]]).decode()
        assert ref["key"] in obj.get("data", {}), f"{kind} {ref['name']} lacks {ref['key']}"
        return str(obj["data"][ref["key"]])

    served: set[str] = set()
    for name, deployment in by_kind.get("Deployment", {}).items():
        spec = pod_spec(deployment)
        assert spec is not None
        # KEDA's HPA sets the count (minReplicaCount, below): a fixed one would fight it.
        assert "replicas" not in deployment["spec"], f"{name}: fixed replicas fight the autoscaler"
        migrated = serving = None
        for kind, container in containers(spec):
            where = f"{source} Deployment {name} {kind[:-1]} {container['name']}"
            args = [str(a) for a in container.get("args", [])]
            assert "command" not in container, f"{where}: keep the image's `spoc` entrypoint"
            assert_cli_accepts(args, where)
            if args[:2] == ["topology", "apply"]:
                # The broker topology before anything of this pod runs (see spoc/topology.py).
                assert kind == "initContainers" and migrated is None, f"{where}: runs first"
                names = {item["name"] for item in container.get("env", [])}
                assert "SPOC_AMQP_URL" in names, f"{where}: needs the broker"
                continue
            parsed = service_command(args)
            assert parsed is not None, f"{where}: `spoc {' '.join(args)}` serves/migrates nothing"
            verb, target = parsed
            assert target in SERVICES, f"{where}: no service {target}"
            limits = container.get("resources", {}).get("limits", {})
            requests = container.get("resources", {}).get("requests", {})
            assert "memory" in limits and memory_bytes(limits["memory"]) <= 256 * 2**20, where
            assert "memory" in requests and "cpu" in requests, f"{where}: no requests"
            security = container.get("securityContext", {})
            assert security.get("allowPrivilegeEscalation") is False, where
            # The environment, as the pod would get it, must be what the settings read.
            env: dict[str, str] = {}
            for item in container.get("env", []):
                if "value" in item:
                    env[item["name"]] = str(item["value"])
                elif source == "overlay":
                    value_from = item["valueFrom"]
                    if "secretKeyRef" in value_from:
                        env[item["name"]] = lookup("Secret", value_from["secretKeyRef"])
                    else:
                        env[item["name"]] = lookup("ConfigMap", value_from["configMapKeyRef"])
                else:  # the base has no Secrets: a stand-in of the right shape
                    env[item["name"]] = placeholder(item["name"], target)
            secret_settings = {n for n in env if n.endswith(SECRET_SETTINGS)}
            assert not secret_settings, (
                f"{where}: secrets as variables, not files: {secret_settings}"
            )
            files = {
                path: value if value is not None else placeholder(path, target)
                for path, value in secret_files(spec, container, env, lookup, source).items()
            }
            assert f"SPOC_{target.upper()}_METRICS_TOKEN" in files, f"{where}: no metrics token"
            if source == "overlay":
                # The example's secrets are published: production refuses them as they are...
                with pytest.raises(pytest.fail.Exception, match="published placeholder"):
                    check_env_against_settings(monkeypatch, target, env, where, files)
                # ...and takes the overlay once an operator has put their own in their place.
                env, files = operator_secrets(env), operator_secrets(files)
            check_env_against_settings(monkeypatch, target, env, where, files)
            if verb == "migrate":
                assert kind == "initContainers", f"{where}: migrations run before the service"
                migrated = target
                continue
            assert kind == "containers", f"{where}: serve runs as the main container"
            assert serving is None, f"{name}: one service per Deployment"
            served.add(target)
            serving = target
            assert migrated == target, f"{name}: no `migrate {target}` init container before it"
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            assert str(ports.get("http")) == args[args.index("--port") + 1], f"{where}: port"
            ready = container.get("readinessProbe", {}).get("httpGet", {})
            alive = container.get("livenessProbe", {}).get("httpGet", {})
            assert ready.get("path") == "/readyz", f"{where}: readiness must probe /readyz"
            assert alive.get("path") == "/healthz", f"{where}: liveness must probe /healthz"
        assert spec.get("securityContext", {}).get("runAsNonRoot") is True, name

        labels = deployment["spec"]["selector"]["matchLabels"]
        services = [
            s for s in by_kind.get("Service", {}).values() if s["spec"].get("selector") == labels
        ]
        assert services, f"{source}: no Service selects Deployment {name}"
        pdbs = [
            p
            for p in by_kind.get("PodDisruptionBudget", {}).values()
            if p["spec"]["selector"].get("matchLabels") == labels
        ]
        assert pdbs, f"{source}: no PodDisruptionBudget for {name}"
        scaled = [
            s
            for s in by_kind.get("ScaledObject", {}).values()
            if s["spec"]["scaleTargetRef"]["name"] == name
        ]
        assert len(scaled) == 1, f"{source}: Deployment {name} needs one KEDA ScaledObject"
        rabbit = [t for t in scaled[0]["spec"]["triggers"] if t["type"] == "rabbitmq"]
        assert rabbit, f"{name}: no rabbitmq trigger"
        assert rabbit[0]["metadata"]["queueName"] == f"{serving}.events"
        assert rabbit[0]["metadata"].get("mode") == "QueueLength"
        assert scaled[0]["spec"].get("minReplicaCount", 0) >= 2
        auth = rabbit[0]["authenticationRef"]["name"]
        assert auth in by_kind.get("TriggerAuthentication", {}), f"{name}: no {auth}"
        if source == "overlay":
            for ref in by_kind["TriggerAuthentication"][auth]["spec"]["secretTargetRef"]:
                host = lookup("Secret", ref)
                assert host.startswith("amqp") and "?" not in host, "KEDA's host: no query string"
    missing = set(SERVICES) - served
    assert not missing, f"{source}: services without a Deployment: {missing}"


KUBERNETES_VALIDATE = (
    str(VENV_BIN / "kubernetes-validate")
    if (VENV_BIN / "kubernetes-validate").exists()
    else shutil.which("kubernetes-validate")
)


@pytest.mark.skipif(KUBERNETES_VALIDATE is None, reason="kubernetes-validate (PyPI) is absent")
def test_kubernetes_objects_match_the_api_schemas(tmp_path: Path) -> None:
    """Strict schema check of the rendered overlay: catches misspelt or misplaced fields that
    Kubernetes would reject or silently drop. KEDA's custom resources have no schema there."""
    assert KUBERNETES_VALIDATE is not None
    rendered = rendered_overlay()
    if rendered is None:
        pytest.skip("neither kubectl nor kustomize is installed to render the overlay")
    manifest = tmp_path / "overlay.yaml"
    manifest.write_text(yaml.safe_dump_all(list(rendered)))
    done = subprocess.run(
        [KUBERNETES_VALIDATE, "--strict", "--quiet", str(manifest)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# Settings that are secrets: containers get them as files (SPOC_SECRETS_DIR), never variables.
SECRET_SETTINGS = (
    "_DATABASE_URL",
    "SPOC_AMQP_URL",
    "_SMTP_URL",
    "_ACCESS_KEY_SECRET",
    "_ADMIN_TOKEN",
    "_METRICS_TOKEN",
)


def secret_files(
    spec: Mapping[str, Any],
    container: Mapping[str, Any],
    env: Mapping[str, str],
    lookup: Any,
    source: str,
) -> dict[str, str | None]:
    """The files a container finds in its SPOC_SECRETS_DIR (a projected volume of Secrets):
    name → value (the overlay's Secrets), or None where the base leaves the value to an
    overlay. Optional Secrets the overlay does not define are left out, as Kubernetes does."""
    directory = env.get("SPOC_SECRETS_DIR")
    if directory is None:
        return {}
    mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == directory]
    assert mounts, f"{container['name']}: SPOC_SECRETS_DIR={directory} but nothing is mounted there"
    assert mounts[0].get("readOnly") is True, f"{container['name']}: mount the secrets read-only"
    volume = next(v for v in spec["volumes"] if v["name"] == mounts[0]["name"])
    files: dict[str, str | None] = {}
    for projected in volume["projected"]["sources"]:
        secret = projected["secret"]
        for item in secret["items"]:
            ref = {"name": secret["name"], "key": item["key"]}
            if source == "base":
                files[item["path"]] = None
                continue
            try:
                files[item["path"]] = lookup("Secret", ref)
            except AssertionError:
                if not secret.get("optional"):
                    raise
    return files


def placeholder(name: str, service: str) -> str:
    """A value of the right shape for an environment variable the base fills from a Secret."""
    if name.endswith("_TOKEN"):
        return "placeholder-token-of-at-least-32-characters"
    if name == "SPOC_AMQP_URL":
        return "amqp://spoc:placeholder-secret@rabbitmq:5672/spoc?heartbeat=30&reconnect_interval=2"
    if name.endswith("_DATABASE_URL"):
        return (
            f"postgresql+asyncpg://spoc_{service}:placeholder-secret@postgres:5432/spoc_{service}"
        )
    if name.endswith("_SMTP_URL"):
        return "smtp://mail:25"
    if name.endswith("_RATE_LIMIT_STORAGE"):
        return "redis://:placeholder-secret@redis:6379/0"
    if name.endswith("_MAIL_FROM"):
        return "servicedesk@spoc.example.org"
    if name.endswith("_URL"):
        return "https://servicedesk.spoc.example.org"
    if name in COMPOSE_REQUIRED:  # the access-key pair: a real pair, as the Secrets hold
        return COMPOSE_REQUIRED[name]
    return "placeholder"
