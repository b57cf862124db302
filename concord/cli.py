"""`concord`: the one entry point for services, operators and the demo."""

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from concord import ops_commands
from lineage.enums import Role
from lineage.settings import LineageSettings

app = typer.Typer(
    help="Concord: control plane for subscription-to-cash integration.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="The lineage database.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (only their hashes are stored).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")

HostOpt = Annotated[str, typer.Option(help="Interface to listen on.")]


def _exit_cleanly(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def _serve(factory: str, *, host: str, port: int, log_level: str) -> None:
    import uvicorn

    # uvicorn drains, restores the previous handlers and re-raises the signal it caught:
    # make those handlers a clean exit, so a stop on request is status 0, not 143.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, _exit_cleanly)
    from lineage.logging import configure_json_logging

    # JSON lines through our root handler, uvicorn's access log included (no log_config).
    configure_json_logging(log_level)
    uvicorn.run(factory, factory=True, host=host, port=port, log_level=log_level, log_config=None)


@app.command()
def api(host: HostOpt = "127.0.0.1", port: Annotated[int, typer.Option()] = 8000) -> None:
    """Serve the HTTP API (intake and control plane) until SIGINT or SIGTERM."""
    _serve("api.main:create_app", host=host, port=port, log_level="info")


@app.command()
def worker(
    host: HostOpt = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(help="Port of the worker's Prometheus /metrics endpoint (0: any free one)."),
    ] = 9100,
) -> None:
    """Run a workflow worker until SIGINT or SIGTERM; in-flight jobs finish first."""
    from prometheus_client import start_http_server

    from lineage.logging import configure_json_logging
    from orchestrator.settings import OrchestratorSettings
    from orchestrator.worker import run_supervised

    configure_json_logging("INFO")
    start_http_server(port, addr=host)
    # Before the first worker runs, and between restarts while Redis is away (run_supervised
    # puts these back then), a stop is a clean exit too.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, _exit_cleanly)
    run_supervised(OrchestratorSettings())


@app.command()
def sandbox(
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8100,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Keep the systems' state here across restarts (default: in memory)."),
    ] = None,
    faults: Annotated[
        str | None,
        typer.Option(help="Fault SPEC, e.g. 'erp:500=0.1,erp:429=0.2,seed=7' (docs/sandbox.md)."),
    ] = None,
    webhook_url: Annotated[
        str | None,
        typer.Option(help="Concord's API base URL, where billing and CRM send signed webhooks."),
    ] = None,
) -> None:
    """Serve the simulated billing, CRM, ERP, provisioning and support systems."""
    # The app factory reads these, so uvicorn's --factory import needs no arguments.
    for name, value in (
        ("CONCORD_SANDBOX_DATA_DIR", data_dir),
        ("CONCORD_SANDBOX_FAULTS", faults),
        ("CONCORD_SANDBOX_WEBHOOK_URL", webhook_url),
    ):
        if value is not None:
            os.environ[name] = str(value)
    _serve("sandbox.app:create_sandbox_app", host=host, port=port, log_level="warning")


@app.command()
def traffic(
    rate: Annotated[float, typer.Option(help="Billing actions per second.")] = 2.0,
    duration: Annotated[float, typer.Option(help="Seconds to run.")] = 60.0,
    seed: Annotated[int, typer.Option(help="Same seed, same business life.")] = 7,
    sandbox_url: Annotated[str, typer.Option()] = "http://127.0.0.1:8100",
    api_url: Annotated[
        str | None, typer.Option(envvar="CONCORD_API_URL", help="Concord's API, to meter usage to.")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="CONCORD_TRAFFIC_API_KEY", help="An ingest key; none: no usage."),
    ] = None,
) -> None:
    """Drive the billing sandbox through a B2B SaaS life: sign-ups, upgrades, invoices, failures;
    with an API URL and an ingest key, also meter usage to Concord as CloudEvents."""
    import json

    from sandbox.traffic import run_traffic

    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, _exit_cleanly)
    report = run_traffic(
        f"{sandbox_url.rstrip('/')}/billing",
        rate=rate,
        duration=duration,
        seed=seed,
        usage_api_url=api_url,
        usage_api_key=api_key,
    )
    typer.echo(json.dumps(report.as_json(), indent=2))


@app.command()
def dashboard(host: HostOpt = "127.0.0.1", port: Annotated[int, typer.Option()] = 8501) -> None:
    """Serve the Streamlit dashboard; it reads and acts through CONCORD_API_URL only."""
    import importlib.util
    import subprocess

    # Found, not imported: nothing of ours imports the dashboard package.
    spec = importlib.util.find_spec("dashboard.app")
    if spec is None or spec.origin is None:
        typer.echo("the dashboard package is not installed", err=True)
        raise typer.Exit(2)
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        spec.origin,
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        # Watching the sources is for editing them: it walked every loaded module after each
        # script run, about 0.2 s of the server's CPU per page on 2 cores (docs/performance.md).
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "minimal",
        "--theme.primaryColor",
        "#2563eb",
    ]
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, _exit_cleanly)
    with subprocess.Popen(command) as process:
        try:
            process.wait()
        except SystemExit:
            process.terminate()
            process.wait(timeout=20)
            raise


@app.command()
def demo(
    api_port: Annotated[int, typer.Option()] = 8000,
    sandbox_port: Annotated[int, typer.Option()] = 8100,
    worker_port: Annotated[int, typer.Option(help="First worker's metrics port.")] = 9100,
    dashboard_port: Annotated[int, typer.Option()] = 8501,
    workers: Annotated[int, typer.Option(min=1)] = 2,
    events: Annotated[int, typer.Option(help="Sample invoices to send at start.")] = 5,
    traffic_rate: Annotated[float, typer.Option(help="Billing actions/s; 0: none.")] = 2.0,
    faults: Annotated[str | None, typer.Option(help="Sandbox fault SPEC ('' for none).")] = None,
) -> None:
    """Run the whole system on embedded defaults, with live traffic, until Ctrl-C."""
    from concord.demo import DEMO_FAULTS, DemoOptions, run_demo
    from lineage.logging import configure_json_logging

    configure_json_logging("INFO")
    sys.exit(
        run_demo(
            DemoOptions(
                api_port=api_port,
                sandbox_port=sandbox_port,
                worker_port=worker_port,
                dashboard_port=dashboard_port,
                workers=workers,
                events=events,
                traffic_rate=traffic_rate,
                faults=DEMO_FAULTS if faults is None else faults,
            )
        )
    )


ApiUrlOpt = Annotated[str | None, typer.Option(help="Default: CONCORD_API_URL.")]
KeyOpt = Annotated[str | None, typer.Option(help="An API key; default: CONCORD_API_KEY.")]


@app.command()
def reconcile(
    period: Annotated[str, typer.Option(help="The month to reconcile, YYYY-MM.")],
    api_url: ApiUrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Reconcile billing against the ERP and CRM for a period (through the API, audited)."""
    from concord.operator import api_client, checked, table

    with api_client(api_url, key) as client:
        run = checked(client.post("/v1/reconciliation/runs", json={"period": period}))
    rows = [
        [
            kind,
            str(entry["count"]),
            ", ".join(f"{amount} {currency}" for currency, amount in entry["amount_minor"].items()),
        ]
        for kind, entry in sorted((run.get("summary") or {}).items())
    ]
    typer.echo(f"run {run['id']} for {period}: {run['state']}")
    typer.echo(
        table(rows, ["kind", "mismatches", "amount at risk (minor units)"])
        if rows
        else "no mismatches"
    )


ops_commands.register(app)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply the schema migrations to CONCORD_DATABASE_URL."""
    from lineage.migrate import upgrade

    settings = LineageSettings()
    upgrade(settings.database_url, revision)
    typer.echo(f"database at revision {revision}", err=True)


@keys_app.command("create")
def keys_create(
    role: Annotated[Role, typer.Option(help="What the key may do.")],
    name: Annotated[str, typer.Option(help="Who or what holds the key.")],
    api_url: ApiUrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Create an API key and print it, alone on stdout, once.

    With an admin key (--key, or CONCORD_API_KEY and an API URL) through the API, audited;
    without one directly on the database (for the first admin key).
    """
    from lineage import apikeys

    if ops_commands.keys_through_api(api_url, key):
        ops_commands.keys_create(role, name, api_url, key)
        return

    async def create(session: AsyncSession) -> str:
        _row, key = await apikeys.create_key(session, name=name, role=role)
        return key

    typer.echo(_run_db(create))


@keys_app.command("list")
def keys_list(api_url: ApiUrlOpt = None, key: KeyOpt = None) -> None:
    """List API keys: id, name, role, prefix, created, last used, revoked."""
    from lineage import apikeys

    if ops_commands.keys_through_api(api_url, key):
        ops_commands.keys_list(api_url, key)
        return

    async def rows(session: AsyncSession) -> list[str]:
        return [
            f"{k.id}\t{k.name}\t{k.role}\tck_{k.prefix}_…\t{k.created_at:%Y-%m-%d %H:%M}\t"
            f"{k.last_used_at or '-'}\t{k.revoked_at or '-'}"
            for k in await apikeys.list_keys(session)
        ]

    typer.echo("id\tname\trole\tkey\tcreated\tlast used\trevoked")
    for line in _run_db(rows):
        typer.echo(line)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument()], api_url: ApiUrlOpt = None, key: KeyOpt = None
) -> None:
    """Revoke an API key by id; requests with it are refused from now on."""
    from lineage import apikeys

    if ops_commands.keys_through_api(api_url, key):
        ops_commands.keys_revoke(key_id, api_url, key)
        return

    async def revoke(session: AsyncSession) -> bool:
        return await apikeys.revoke_key(session, key_id)

    if not _run_db(revoke):
        typer.echo(f"no active key with id {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked key {key_id}", err=True)


T = TypeVar("T")


def _run_db(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction against CONCORD_DATABASE_URL."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from lineage.db import make_engine, make_sessionmaker

    async def main() -> T:
        engine = make_engine(LineageSettings().database_url)
        try:
            async with make_sessionmaker(engine).begin() as session:
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except (OperationalError, ProgrammingError) as exc:
        typer.echo(f"database error: {exc.orig}. Has `concord db upgrade` been run?", err=True)
        raise typer.Exit(2) from exc
