"""JSON log lines, with the correlation ID on every line that concerns a transaction."""

import io
import json
import logging
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lineage.correlation import bind_correlation_id
from lineage.logging import configure_json_logging
from orchestrator.settings import OrchestratorSettings
from tests.factories import WEBHOOK_SECRET, new_invoice, signed_headers, stripe_event
from tests.support.ports import free_port_run
from tests.test_cli import concord, running, wait_for
from tests.workers import run_burst


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> str:
    """Logging does not depend on the backend: SQLite only."""
    path = tmp_path / "concord.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Root logging configured as the services do, into a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_json_logging("INFO", stream=stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logging.captureWarnings(False)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_inside_a_bound_correlation_id_carries_it(captured: io.StringIO) -> None:
    log = logging.getLogger("concord.test")

    log.info("before")
    with bind_correlation_id("0193-cid"):
        log.warning("posting %s", "in_1", extra={"step": "erp.post_invoice"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    log.info("explicit", extra={"correlation_id": "other"})

    before, posting, failed, explicit = _lines(captured)
    assert "correlation_id" not in before
    assert posting["correlation_id"] == "0193-cid"
    assert (posting["level"], posting["logger"], posting["message"], posting["step"]) == (
        "WARNING",
        "concord.test",
        "posting in_1",
        "erp.post_invoice",
    )
    assert failed["correlation_id"] == "0193-cid"
    assert "ValueError: boom" in str(failed["exception"])
    assert explicit["correlation_id"] == "other"
    assert str(before["time"]).endswith("+00:00")


def test_the_api_process_logs_json_with_the_new_transactions_id(
    tmp_path: Path, redis_url: str
) -> None:
    database_url = f"sqlite:///{tmp_path / 'api.db'}"
    assert concord("db", "upgrade", env={"CONCORD_DATABASE_URL": database_url}).returncode == 0
    port = free_port_run()
    env = {
        "CONCORD_DATABASE_URL": database_url,
        "CONCORD_REDIS_URL": redis_url,
        "CONCORD_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    body = json.dumps(stripe_event(invoice=new_invoice())).encode()

    with running("api", "--host", "127.0.0.1", "--port", str(port), env=env) as process:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/readyz", process)
        intake = httpx.post(
            f"{base}/v1/webhooks/stripe", content=body, headers=signed_headers(body)
        )
        correlation_id = intake.json()["correlation_id"]
        lookup = httpx.get(f"{base}/v1/transactions/{correlation_id}")  # no key: 401
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)

    assert (intake.status_code, lookup.status_code) == (202, 401)
    lines = [line for line in (stdout + stderr).splitlines() if line.strip()]
    assert lines
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    webhook = [e for e in entries if e.get("path") == "/v1/webhooks/stripe"]
    assert len(webhook) == 1, entries
    assert webhook[0]["logger"] == "uvicorn.access"
    assert (webhook[0]["method"], webhook[0]["status"]) == ("POST", 202)
    assert webhook[0]["correlation_id"] == correlation_id
    [denied] = [e for e in entries if str(e.get("path", "")).startswith("/v1/transactions/")]
    assert denied["correlation_id"] == correlation_id
    # Lines about no transaction carry none.
    assert all("correlation_id" not in e for e in entries if e.get("path") == "/readyz")


async def test_worker_job_lines_carry_the_correlation_id(
    captured: io.StringIO, client: httpx.AsyncClient, worker_settings: OrchestratorSettings
) -> None:
    body = json.dumps(stripe_event(invoice=new_invoice())).encode()
    intake = await client.post("/v1/webhooks/stripe", content=body, headers=signed_headers(body))
    correlation_id = intake.json()["correlation_id"]

    for _ in range(3):  # the wake-up may land after the first burst's start-up sweep
        await run_burst(worker_settings)
        if any("tx:" in str(e["message"]) for e in _lines(captured)):
            break

    jobs = [
        e for e in _lines(captured) if e["logger"] == "arq.worker" and "tx:" in str(e["message"])
    ]
    assert jobs
    assert {e.get("correlation_id") for e in jobs} == {correlation_id}
