"""`concord demo`: every service on embedded defaults, supervised until Ctrl-C."""

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
import typer

from concord.embedded_redis import EmbeddedRedis, port_free
from lineage.enums import Role
from lineage.migrate import upgrade
from lineage.settings import LineageSettings
from sandbox import stripe_shapes

_STOP_TIMEOUT_S = 20


class _Stop(Exception):
    pass


class _StopOnce:
    """SIGINT and SIGTERM: the first raises _Stop, and those after it are ignored, so that
    nothing cuts the stopping short. That left the services running, out of our process group,
    on the demo's ports: SIGTERM to `make demo`'s process group reaches us twice (make passes
    it on), within microseconds; an impatient user presses Ctrl-C twice. Each child still gets
    SIGTERM, then SIGKILL after _STOP_TIMEOUT_S, so stopping is bounded."""

    def __init__(self) -> None:
        self.stopping = False

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        if not self.stopping:
            self.stopping = True
            raise _Stop


_CONCORD = [sys.executable, "-m", "concord"]


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Own sessions: Ctrl-C reaches only us, and we stop the children in order.
    return subprocess.Popen([*_CONCORD, *args], env=env, start_new_session=True)


def _described(child: subprocess.Popen[bytes]) -> str:
    """`concord worker --port 9101` for a child _spawn started."""
    args = child.args
    if not isinstance(args, list):
        return str(args)
    return " ".join(["concord", *map(str, args[len(_CONCORD) :])])


def _wait_healthy(url: str, process: subprocess.Popen[bytes], *, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with status {process.returncode} while starting")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become healthy in {timeout_s:.0f}s")


def _create_keys(database_url: str) -> dict[Role, str]:
    from lineage import apikeys
    from lineage.db import make_engine, make_sessionmaker

    async def create() -> dict[Role, str]:
        engine = make_engine(database_url)
        try:
            async with make_sessionmaker(engine).begin() as session:
                keys = {}
                for role in Role:
                    _row, keys[role] = await apikeys.create_key(
                        session, name=f"demo-{role}", role=role
                    )
                return keys
        finally:
            await engine.dispose()

    return asyncio.run(create())


def _send_sample_invoices(api_url: str, secret: str, count: int) -> None:
    now = int(time.time())
    with httpx.Client(base_url=api_url, timeout=10) as client:
        for n in range(count):
            invoice = stripe_shapes.invoice_object(
                invoice_id=stripe_shapes.new_id("in"),
                customer_id=stripe_shapes.new_id("cus"),
                subscription_id=stripe_shapes.new_id("sub"),
                amount_minor=4900 + 1000 * n,
                currency="usd",
                period_start=now,
                period_end=now + 30 * 86400,
            )
            body, header = stripe_shapes.signed_body(
                stripe_shapes.event_envelope("invoice.finalized", invoice), secret
            )
            client.post(
                "/v1/webhooks/stripe",
                content=body,
                headers={"Stripe-Signature": header, "Content-Type": "application/json"},
            )


# Mild and seeded: some retries and rate limits, a few terminal CRM refusals for the exception
# queue, and ERP drift for reconciliation to find.
DEMO_FAULTS = (
    "erp:503=0.03,erp:429=0.03,erp.invoice:drop_after_commit=0.02,erp:drift_amount=0.02,"
    "crm:422=0.02,seed=7"
)


@dataclass(frozen=True, slots=True)
class DemoOptions:
    api_port: int = 8000
    sandbox_port: int = 8100
    worker_port: int = 9100
    dashboard_port: int = 8501
    workers: int = 2
    events: int = 5
    traffic_rate: float = 2.0
    faults: str = DEMO_FAULTS
    # Sandbox state lives here, so a second demo finds the ERP as the first one left it.
    data_dir: Path = Path(".concord-demo")


def _environment(options: DemoOptions, api_url: str) -> dict[str, str]:
    env = dict(os.environ)
    sandbox_url = f"http://127.0.0.1:{options.sandbox_port}"
    env.setdefault("CONCORD_STRIPE_WEBHOOK_SECRET", f"whsec_demo_{secrets.token_hex(16)}")
    env.setdefault("CONCORD_HUBSPOT_CLIENT_SECRET", secrets.token_hex(16))
    for system in ("billing", "erp", "crm", "provisioning", "support", "analytics"):
        env.setdefault(f"CONCORD_{system.upper()}_URL", f"{sandbox_url}/{system}")
    # The sandbox is on loopback; nothing else private is reachable from the demo's workers.
    env.setdefault("CONCORD_OUTBOUND_ALLOWLIST", "127.0.0.1")
    env.setdefault("CONCORD_RECONCILIATION_BILLING_URL", f"{sandbox_url}/billing")
    env.setdefault("CONCORD_RECONCILIATION_ERP_URL", f"{sandbox_url}/erp")
    env.setdefault("CONCORD_RECONCILIATION_CRM_URL", f"{sandbox_url}/crm")
    env.setdefault("CONCORD_RECONCILIATION_DIR", str(options.data_dir / "reconciliation-runs"))
    env.setdefault("CONCORD_RECONCILE_EVERY_MIN", "1")
    # The traffic moves the sandbox's clock about three months a minute: every month it touched
    # in the schedule's two-minute window is worth a run (each takes about a second here).
    env.setdefault("CONCORD_RECONCILE_MAX_PERIODS", "12")
    # The traffic meters usage; summarise closed periods every minute so the demo shows them.
    env.setdefault("CONCORD_USAGE_EVERY_MIN", "1")
    env.setdefault("CONCORD_API_URL", api_url)
    return env


def _busy_ports(options: DemoOptions) -> list[str]:
    """The ports the demo would listen on that something else holds, or that two of its own
    services would share: a service that cannot bind exits, and the demo with it, so say so
    before starting anything."""
    wanted = [
        ("the API", options.api_port),
        ("the sandbox", options.sandbox_port),
        ("the dashboard", options.dashboard_port),
        *((f"worker {n + 1}'s metrics", options.worker_port + n) for n in range(options.workers)),
    ]
    busy: list[str] = []
    seen: dict[int, str] = {}
    for name, port in wanted:
        if port in seen:
            busy.append(f"{port} ({name} and {seen[port]})")
            continue
        seen[port] = name
        if not port_free(port):
            busy.append(f"{port} ({name})")
    return busy


def run_demo(options: DemoOptions) -> int:
    busy = _busy_ports(options)
    if busy:
        typer.echo(
            f"cannot start: port {', '.join(busy)} already in use. Stop what holds it, or pick"
            " other ports: --api-port, --sandbox-port, --dashboard-port, --worker-port (the"
            " first of as many consecutive ports as workers).",
            err=True,
        )
        return 2
    settings = LineageSettings()
    api_url = f"http://127.0.0.1:{options.api_port}"
    sandbox_url = f"http://127.0.0.1:{options.sandbox_port}"
    env = _environment(options, api_url)
    children: list[subprocess.Popen[bytes]] = []
    stop = _StopOnce()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    with ExitStack() as stack:
        try:
            upgrade(settings.database_url)
            if "CONCORD_REDIS_URL" not in env:
                # Stopped last: the workers drain against it first.
                redis_server = EmbeddedRedis(own_session=True)
                env["CONCORD_REDIS_URL"] = stack.enter_context(redis_server).url
            sandbox_proc = _spawn(
                [
                    "sandbox",
                    "--port",
                    str(options.sandbox_port),
                    "--webhook-url",
                    api_url,
                    "--faults",
                    options.faults,
                    "--data-dir",
                    str(options.data_dir / "sandbox"),
                ],
                env,
            )
            children.append(sandbox_proc)
            _wait_healthy(f"{sandbox_url}/healthz", sandbox_proc)
            api_proc = _spawn(["api", "--port", str(options.api_port)], env)
            children.append(api_proc)
            _wait_healthy(f"{api_url}/readyz", api_proc)
            for n in range(options.workers):
                children.append(_spawn(["worker", "--port", str(options.worker_port + n)], env))
            dashboard_proc = _spawn(["dashboard", "--port", str(options.dashboard_port)], env)
            children.append(dashboard_proc)
            dashboard_url = f"http://127.0.0.1:{options.dashboard_port}"
            _wait_healthy(f"{dashboard_url}/_stcore/health", dashboard_proc)
            keys = _create_keys(settings.database_url)
            _send_sample_invoices(api_url, env["CONCORD_STRIPE_WEBHOOK_SECRET"], options.events)
            if options.traffic_rate > 0:
                children.append(
                    _spawn(
                        [
                            "traffic",
                            "--rate",
                            str(options.traffic_rate),
                            "--duration",
                            "86400",
                            "--seed",
                            str(secrets.randbelow(10_000)),
                            "--sandbox-url",
                            sandbox_url,
                        ],
                        {**env, "CONCORD_TRAFFIC_API_KEY": keys[Role.INGEST]},
                    )
                )
            typer.echo(f"\nConcord is running on {settings.database_url}")
            typer.echo(f"  dashboard    {dashboard_url}   (sign in with a key below)")
            typer.echo(f"  API docs     {api_url}/docs")
            typer.echo(f"  sandbox ERP  {sandbox_url}/erp/_admin/ledger")
            typer.echo(
                f"  traffic      {options.traffic_rate} billing actions/s; faults: "
                f"{options.faults or 'none'}"
            )
            for role, key in keys.items():
                typer.echo(f"  {role:<9}    {key}")
            typer.echo(
                f"\nTry: curl -H 'Authorization: Bearer {keys[Role.VIEWER]}' "
                f"{api_url}/v1/transactions\nCtrl-C stops everything.",
            )
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            gone = next(child for child in children if child.poll() is not None)
            typer.echo(
                f"{_described(gone)} exited with status {gone.returncode};"
                " stopping the others (its log lines are above)",
                err=True,
            )
            return 1
        except _Stop:
            typer.echo("\nstopping…", err=True)
            return 0
        finally:
            stop.stopping = True  # also when the demo stops on its own
            _stop_all(children)
            stack.close()  # the embedded Redis, now that nothing uses it
            for s, handler in previous.items():
                signal.signal(s, handler)


def _stop_all(children: list[subprocess.Popen[bytes]]) -> None:
    # Reverse order: the worker drains before the API and the sandbox it calls go away.
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
