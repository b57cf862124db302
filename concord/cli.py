"""`concord`: the one entry point for services, operators and the demo."""

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

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
    uvicorn.run(factory, factory=True, host=host, port=port, log_level=log_level)


@app.command()
def api(host: HostOpt = "127.0.0.1", port: Annotated[int, typer.Option()] = 8000) -> None:
    """Serve the HTTP API (intake and control plane) until SIGINT or SIGTERM."""
    _serve("api.main:create_app", host=host, port=port, log_level="info")


@app.command()
def worker(
    host: HostOpt = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port of the worker's Prometheus /metrics endpoint.")
    ] = 9100,
) -> None:
    """Run a workflow worker until SIGINT or SIGTERM; in-flight jobs finish first."""
    from prometheus_client import start_http_server

    from orchestrator.settings import OrchestratorSettings
    from orchestrator.worker import run_supervised

    start_http_server(port, addr=host)
    # Between restarts (Redis away) arq's handlers are gone: a stop then is still clean.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, _exit_cleanly)
    run_supervised(OrchestratorSettings())


@app.command()
def sandbox(host: HostOpt = "127.0.0.1", port: Annotated[int, typer.Option()] = 8100) -> None:
    """Serve the simulated billing, CRM, ERP, provisioning and support systems."""
    _serve("sandbox.app:create_sandbox_app", host=host, port=port, log_level="warning")


@app.command()
def demo(
    api_port: Annotated[int, typer.Option()] = 8000,
    sandbox_port: Annotated[int, typer.Option()] = 8100,
    worker_port: Annotated[int, typer.Option()] = 9100,
    events: Annotated[int, typer.Option(help="Sample invoices to send through.")] = 5,
) -> None:
    """Run the whole system on embedded defaults until Ctrl-C."""
    from concord.demo import run_demo

    sys.exit(
        run_demo(
            api_port=api_port, sandbox_port=sandbox_port, worker_port=worker_port, events=events
        )
    )


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
) -> None:
    """Create an API key and print it, alone on stdout, once."""
    from lineage import apikeys

    async def create(session: AsyncSession) -> str:
        _row, key = await apikeys.create_key(session, name=name, role=role)
        return key

    typer.echo(_run_db(create))


@keys_app.command("list")
def keys_list() -> None:
    """List API keys: id, name, role, prefix, created, last used, revoked."""
    from lineage import apikeys

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
def keys_revoke(key_id: Annotated[int, typer.Argument()]) -> None:
    """Revoke an API key by id; requests with it are refused from now on."""
    from lineage import apikeys

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
