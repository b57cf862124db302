"""docker-compose.yml read against the code, since Docker does not run here.

Every `concord ...` command the file runs is parsed by the real Typer app, so a renamed or
mistyped option, a bad value or a missing argument fails here. The deployment rules (migrations
before the API, a scalable worker, a durable password-protected Redis, a health check on every
long-running service, only real CONCORD_ settings) are checks that return their problems; each
is also run on a broken copy of the file to show that it can fail.
"""

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer

# PyYAML ships no type hints; types-PyYAML is not a dependency (yet).
import yaml
from typer.core import TyperGroup

from api.settings import ApiSettings
from concord.cli import app
from lineage.db import async_url
from orchestrator.client.queue import redis_settings
from orchestrator.settings import OrchestratorSettings
from reconciliation.settings import ReconciliationSettings
from sandbox.app import DATA_DIR_ENV, FAULTS_ENV, WEBHOOK_URL_ENV
from sandbox.faults import parse_spec

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

Compose = dict[str, Any]
Service = dict[str, Any]

CONCORD_SERVICES = {"migrate", "api", "worker", "dashboard", "sandbox", "traffic"}
LONG_RUNNING = {"postgres", "redis", "api", "worker", "dashboard", "sandbox", "traffic"}
TRIAL = {"sandbox", "traffic"}
# The URL path each service's health check must probe.
HEALTH_PATHS = {
    "api": "/readyz",
    "worker": "/metrics",
    "dashboard": "/_stcore/health",
    "sandbox": "/healthz",
}
# Read by the sandbox or by the operator commands, not by a settings class.
OTHER_SETTINGS = {DATA_DIR_ENV, FAULTS_ENV, WEBHOOK_URL_ENV, "CONCORD_API_URL", "CONCORD_API_KEY"}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}; $$ is a literal $.
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
PLACEHOLDER = "from-the-environment"


def load(path: Path = COMPOSE_FILE) -> Compose:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def interpolate(text: str) -> str:
    """Compose's interpolation with an empty environment: defaults, else a placeholder."""

    def one(match: re.Match[str]) -> str:
        if match["op"] in (":-", "-"):
            return match["arg"]
        return PLACEHOLDER

    return _VARIABLE.sub(one, text).replace("$$", "$")


def variables(text: str) -> set[str]:
    return {m["name"] for m in _VARIABLE.finditer(text)}


def command_of(service: Service) -> list[str]:
    command = service.get("command")
    assert isinstance(command, list), "commands are in exec form: a list of strings"
    return [interpolate(str(arg)) for arg in command]


def environment_of(service: Service) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment is a mapping"
    return {str(k): interpolate(str(v)) for k, v in env.items()}


def healthcheck_text(service: Service) -> str:
    check = service.get("healthcheck") or {}
    test = check.get("test") or []
    return " ".join(test) if isinstance(test, list) else str(test)


def parse_concord(args: list[str]) -> dict[str, Any]:
    """Parse `concord ARGS` as the CLI would, without running it; return the parameters.

    Raises typer.TyperException (click's UsageError: no such command or option, a bad value,
    a missing argument, an extra argument).
    """
    command = typer.main.get_command(app)
    ctx = typer.Context(command, info_name="concord")
    rest = list(args)
    while isinstance(command, TyperGroup):
        if not rest:
            raise typer.TyperException(f"{ctx.command_path} needs a subcommand")
        name, sub, rest = command.resolve_command(ctx, rest)
        assert name is not None
        assert sub is not None
        if isinstance(sub, TyperGroup):
            ctx = typer.Context(sub, info_name=name, parent=ctx)
        else:
            return dict(sub.make_context(name, rest, parent=ctx).params)
        command = sub
    raise AssertionError("unreachable")


# --- the checks: each returns what is wrong, so a broken copy shows that it can fail ---------


def cli_problems(compose: Compose) -> list[str]:
    problems = []
    for name in sorted(CONCORD_SERVICES):
        service = compose["services"].get(name)
        if service is None:
            problems.append(f"{name}: missing")
            continue
        if "build" not in service:
            problems.append(f"{name}: not built from the Dockerfile (ENTRYPOINT concord)")
        try:
            parse_concord(command_of(service))
        except typer.TyperException as exc:
            problems.append(f"{name}: concord {' '.join(command_of(service))}: {exc}")
    return problems


def migrate_problems(compose: Compose) -> list[str]:
    services = compose["services"]
    problems = []
    if command_of(services["migrate"])[:2] != ["db", "upgrade"]:
        problems.append("migrate does not run `concord db upgrade`")
    if services["migrate"].get("restart", "no") != "no":
        problems.append("migrate is a one-shot: restart must be 'no'")
    for name in ("api", "worker"):
        condition = (services[name].get("depends_on") or {}).get("migrate", {}).get("condition")
        if condition != "service_completed_successfully":
            problems.append(f"{name} does not wait for migrate to complete successfully")
    return problems


def scalability_problems(compose: Compose) -> list[str]:
    worker = compose["services"]["worker"]
    problems = [
        f"worker pins {key}: two copies could not coexist"
        for key in ("container_name", "hostname", "ports")
        if worker.get(key)
    ]
    if worker.get("restart") != "unless-stopped":
        problems.append("worker is not restarted when it exits")
    return problems


def redis_problems(compose: Compose) -> list[str]:
    services = compose["services"]
    raw = [str(arg) for arg in services["redis"].get("command") or []]
    problems = []

    def value(flag: str) -> str | None:
        return raw[raw.index(flag) + 1] if flag in raw and raw.index(flag) + 1 < len(raw) else None

    if value("--appendonly") != "yes":
        problems.append("redis: --appendonly yes is not set")
    if value("--maxmemory-policy") != "noeviction":
        problems.append("redis: --maxmemory-policy noeviction is not set")
    password = value("--requirepass")
    secret = variables(password or "")
    if not secret:
        problems.append("redis: --requirepass does not take the password from the environment")
    for name, service in services.items():
        url = (service.get("environment") or {}).get("CONCORD_REDIS_URL")
        if url is None:
            continue
        if not secret or not secret <= variables(str(url)):
            problems.append(f"{name}: CONCORD_REDIS_URL does not carry the Redis password")
        elif redis_settings(interpolate(str(url))).password != PLACEHOLDER:
            problems.append(f"{name}: CONCORD_REDIS_URL's password is not where arq reads it")
    return problems


def healthcheck_problems(compose: Compose) -> list[str]:
    services = compose["services"]
    problems = []
    for name in sorted(LONG_RUNNING):
        check = services.get(name, {}).get("healthcheck") or {}
        test = check.get("test")
        if not test or check.get("disable") or test in (["NONE"], "NONE"):
            problems.append(f"{name}: no health check")
    for name, path in HEALTH_PATHS.items():
        port = parse_concord(command_of(services[name])).get("port")
        if f"//127.0.0.1:{port}{path}" not in healthcheck_text(services[name]):
            problems.append(f"{name}: health check does not probe 127.0.0.1:{port}{path}")
    return problems


def known_settings() -> set[str]:
    fields: set[str] = set()
    for settings in (ApiSettings, OrchestratorSettings, ReconciliationSettings):
        fields |= {f"CONCORD_{name.upper()}" for name in settings.model_fields}
    return fields | OTHER_SETTINGS


def settings_problems(compose: Compose) -> list[str]:
    known = known_settings()
    return [
        f"{name}: {key} is not a Concord setting"
        for name, service in sorted(compose["services"].items())
        for key in environment_of(service)
        if key.startswith("CONCORD_") and key not in known
    ]


def wiring_problems(compose: Compose) -> list[str]:
    """The services find each other at the hosts and ports their commands listen on."""
    services = compose["services"]
    ports = {
        name: parse_concord(command_of(services[name]))["port"]
        for name in ("api", "worker", "dashboard", "sandbox")
    }
    problems = []

    def expect(where: str, url: str | None, host: str, port: int) -> None:
        parts = urlsplit(url or "")
        if (parts.hostname, parts.port) != (host, port):
            problems.append(f"{where}: {url!r} is not {host}:{port}")

    expect(
        "dashboard CONCORD_API_URL",
        environment_of(services["dashboard"]).get("CONCORD_API_URL"),
        "api",
        ports["api"],
    )
    sandbox = parse_concord(command_of(services["sandbox"]))
    expect("sandbox --webhook-url", sandbox["webhook_url"], "api", ports["api"])
    traffic = parse_concord(command_of(services["traffic"]))
    expect("traffic --sandbox-url", traffic["sandbox_url"], "sandbox", ports["sandbox"])
    worker_env = environment_of(services["worker"])
    for system in ("ERP", "CRM", "PROVISIONING", "SUPPORT"):
        expect(
            f"worker CONCORD_{system}_URL",
            worker_env.get(f"CONCORD_{system}_URL"),
            "sandbox",
            ports["sandbox"],
        )
    allow = worker_env.get("CONCORD_OUTBOUND_ALLOWLIST", "").split(",")
    if "sandbox" not in allow:
        problems.append("worker: the trial's sandbox is not on CONCORD_OUTBOUND_ALLOWLIST")
    for name in ("migrate", "api", "worker"):
        url = environment_of(services[name]).get("CONCORD_DATABASE_URL", "")
        parsed = async_url(url)
        if (parsed.get_backend_name(), parsed.host, parsed.password) != (
            "postgresql",
            "postgres",
            PLACEHOLDER,
        ):
            problems.append(f"{name}: CONCORD_DATABASE_URL is not postgres with a password")
    return problems


def profile_problems(compose: Compose) -> list[str]:
    return [
        f"{name}: profiles {service.get('profiles')}"
        for name, service in sorted(compose["services"].items())
        if (service.get("profiles") == ["trial"]) != (name in TRIAL)
    ]


CHECKS: list[Callable[[Compose], list[str]]] = [
    cli_problems,
    migrate_problems,
    scalability_problems,
    redis_problems,
    healthcheck_problems,
    settings_problems,
    wiring_problems,
    profile_problems,
]


@pytest.fixture(scope="module")
def compose() -> Compose:
    return load()


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_compose_file_passes(check: Callable[[Compose], list[str]], compose: Compose) -> None:
    assert check(compose) == []


# --- breakages: one per way the file could go wrong, each caught by its check ---------------


def api_option_renamed(c: Compose) -> None:
    c["services"]["api"]["command"][1] = "--hostname"


def sandbox_option_misspelt(c: Compose) -> None:
    args = c["services"]["sandbox"]["command"]
    args[args.index("--webhook-url")] = "--webhook"


def worker_port_not_a_number(c: Compose) -> None:
    c["services"]["worker"]["command"][-1] = "ninety-one hundred"


def unknown_subcommand(c: Compose) -> None:
    c["services"]["migrate"]["command"] = ["db", "migrate"]


def extra_argument(c: Compose) -> None:
    c["services"]["traffic"]["command"].append("now")


def migrate_not_awaited(c: Compose) -> None:
    c["services"]["api"]["depends_on"]["migrate"]["condition"] = "service_started"


def worker_named(c: Compose) -> None:
    c["services"]["worker"]["container_name"] = "concord-worker"


def worker_port_published(c: Compose) -> None:
    c["services"]["worker"]["ports"] = ["9100:9100"]


def redis_evicts(c: Compose) -> None:
    args = c["services"]["redis"]["command"]
    args[args.index("--maxmemory-policy") + 1] = "allkeys-lru"


def redis_without_aof(c: Compose) -> None:
    args = c["services"]["redis"]["command"]
    args[args.index("--appendonly") + 1] = "no"


def redis_password_literal(c: Compose) -> None:
    args = c["services"]["redis"]["command"]
    args[args.index("--requirepass") + 1] = "hunter2"


def redis_url_without_password(c: Compose) -> None:
    c["services"]["api"]["environment"]["CONCORD_REDIS_URL"] = "redis://redis:6379/0"


def dashboard_unchecked(c: Compose) -> None:
    del c["services"]["dashboard"]["healthcheck"]


def api_checks_wrong_port(c: Compose) -> None:
    c["services"]["api"]["command"][-1] = "8080"


def setting_misspelt(c: Compose) -> None:
    c["services"]["worker"]["environment"]["CONCORD_ERP_ULR"] = "http://sandbox:8100/erp"


def dashboard_points_elsewhere(c: Compose) -> None:
    c["services"]["dashboard"]["environment"]["CONCORD_API_URL"] = "http://127.0.0.1:8000"


def trial_always_on(c: Compose) -> None:
    del c["services"]["traffic"]["profiles"]


BREAKAGES: list[tuple[Callable[[Compose], list[str]], Callable[[Compose], None]]] = [
    (cli_problems, api_option_renamed),
    (cli_problems, sandbox_option_misspelt),
    (cli_problems, worker_port_not_a_number),
    (cli_problems, unknown_subcommand),
    (cli_problems, extra_argument),
    (migrate_problems, migrate_not_awaited),
    (scalability_problems, worker_named),
    (scalability_problems, worker_port_published),
    (redis_problems, redis_evicts),
    (redis_problems, redis_without_aof),
    (redis_problems, redis_password_literal),
    (redis_problems, redis_url_without_password),
    (healthcheck_problems, dashboard_unchecked),
    (healthcheck_problems, api_checks_wrong_port),
    (settings_problems, setting_misspelt),
    (wiring_problems, dashboard_points_elsewhere),
    (profile_problems, trial_always_on),
]


@pytest.mark.parametrize(
    ("check", "breakage"), BREAKAGES, ids=[breakage.__name__ for _, breakage in BREAKAGES]
)
def test_each_check_can_fail(
    check: Callable[[Compose], list[str]], breakage: Callable[[Compose], None], compose: Compose
) -> None:
    broken = copy.deepcopy(compose)
    breakage(broken)

    assert check(broken) != []


def test_sandbox_fault_spec_parses(compose: Compose) -> None:
    faults = parse_concord(command_of(compose["services"]["sandbox"]))["faults"]

    assert parse_spec(faults).rules


def test_dockerfile_runs_concord_as_a_non_root_user() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]

    assert instructions[0] == "FROM python:3.11-slim AS build"
    assert "FROM python:3.11-slim" in instructions
    assert 'ENTRYPOINT ["concord"]' in instructions
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users
    assert users[-1] not in ("root", "0")
    assert any("pip install ." in line for line in instructions)
