"""Operator commands as an operator runs them: `python -m concord ...` against a real API.

The commands only speak HTTP, so one database backend (SQLite) is enough here; the API's own
tests run every route on PostgreSQL too.
"""

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from lineage.enums import Role
from orchestrator.settings import OrchestratorSettings
from tests.factories import new_invoice, signed_headers, stripe_event
from tests.test_cli import KEY_PATTERN, concord
from tests.workers import run_burst

# Nothing listens on port 9 (discard): every ERP call fails with a connection error.
DEAD_ERP = "http://127.0.0.1:9/erp"


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "concord.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def ops_cli(
    api_url: str, key: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"CONCORD_API_URL": api_url, "CONCORD_API_KEY": key}
    if stdin is None:
        return concord(*args, env=env)
    import os
    import sys

    return subprocess.run(
        [sys.executable, "-m", "concord", *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def post_invoice(api_url: str) -> str:
    body = json.dumps(stripe_event(invoice=new_invoice())).encode()
    response = httpx.post(
        f"{api_url}/v1/webhooks/stripe", content=body, headers=signed_headers(body)
    )
    assert response.status_code == 202, response.text
    return str(response.json()["correlation_id"])


def state_of(api_url: str, key: str, correlation_id: str) -> str:
    response = httpx.get(f"{api_url}/v1/transactions/{correlation_id}", headers=auth(key))
    assert response.status_code == 200, response.text
    return str(response.json()["state"])


async def seed_exceptions(
    api_url: str, worker: OrchestratorSettings, key: str, count: int
) -> list[str]:
    """Invoices that met a dead ERP once (max_attempts=1): each is an open exception."""
    ids = [post_invoice(api_url) for _ in range(count)]
    dead = worker.model_copy(update={"erp_url": DEAD_ERP, "max_attempts": 1})
    states: list[str] = []
    # Intake's wake-up goes out after its answer: a burst can start on an empty queue, and
    # the next burst's start-up sweep picks up what it missed.
    for _ in range(5):
        await run_burst(dead)
        states = [state_of(api_url, key, cid) for cid in ids]
        if set(states) == {"exception"}:
            return ids
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected exceptions, got {states}")


async def test_exceptions_table_then_resolve(
    api_url: str, api_keys: dict[Role, str], worker_settings: OrchestratorSettings
) -> None:
    ops = api_keys[Role.OPS]
    [cid] = await seed_exceptions(api_url, worker_settings, ops, 1)

    listed = ops_cli(api_url, api_keys[Role.VIEWER], "exceptions")
    none = ops_cli(api_url, ops, "exceptions", "--classification", "validation")
    denied = ops_cli(
        api_url, api_keys[Role.VIEWER], "resolve", cid, "--resolution", "x", "--note", "y"
    )
    resolved = ops_cli(
        api_url, ops, "resolve", cid, "--resolution", "posted_by_hand", "--note", "JE 4411"
    )
    after = ops_cli(api_url, ops, "exceptions")

    assert listed.returncode == 0, listed.stderr
    header, row, total = listed.stdout.splitlines()
    assert header.split() == [
        "id", "correlation", "id", "workflow", "classification", "age", "owner", "suggested", "action"
    ]  # fmt: skip
    assert cid in row
    assert "retry_budget_exhausted" in row
    assert "invoice" in row
    assert total == "1 open exception"
    assert (none.returncode, none.stdout) == (0, "no open exceptions\n")
    assert denied.returncode == 1
    assert denied.stderr.startswith("HTTP 403 forbidden: ")
    assert resolved.returncode == 0, resolved.stderr
    assert "manually_resolved" in resolved.stdout
    assert "posted_by_hand" in resolved.stdout
    assert state_of(api_url, ops, cid) == "manually_resolved"
    assert after.stdout == "no open exceptions\n"


async def test_replay_one_then_bulk_by_filter(
    api_url: str, api_keys: dict[Role, str], worker_settings: OrchestratorSettings
) -> None:
    ops = api_keys[Role.OPS]
    first, second, third = await seed_exceptions(api_url, worker_settings, ops, 3)

    one = ops_cli(api_url, ops, "replay", first, "--reason", "ERP is back")
    state_after_one = state_of(api_url, ops, first)
    preview = ops_cli(api_url, ops, "replay", "--state", "exception", "--since", "1h", "--dry-run")
    unconfirmed = ops_cli(
        api_url, ops, "replay", "--state", "exception", "--reason", "outage", stdin="n\n"
    )
    bulk = ops_cli(
        api_url,
        ops,
        "replay",
        "--state",
        "exception",
        "--reason",
        "ERP outage over",
        "--name",
        "erp-outage",
        "--yes",
    )

    assert one.returncode == 0, one.stderr
    header, row = one.stdout.splitlines()
    assert row.split()[:3] == [first, "2", "pending"]
    assert state_after_one in ("pending", "running", "retrying", "posted", "exception")
    assert preview.returncode == 0, preview.stderr
    assert preview.stdout.startswith("2 transactions match (0 already held")
    assert second in preview.stdout
    assert third in preview.stdout
    assert unconfirmed.returncode == 1
    assert "Replay these 2 transactions?" in unconfirmed.stderr
    assert "started" not in unconfirmed.stderr
    assert bulk.returncode == 0, bulk.stderr
    outcomes = bulk.stdout.splitlines()
    assert outcomes[-1].endswith("completed: replayed 2")
    assert {line.split()[0] for line in outcomes if " replayed " in f"{line} "} >= {second, third}
    jobs = httpx.get(f"{api_url}/v1/replays", headers=auth(ops)).json()
    assert [(j["name"], j["reason"], j["done"]) for j in jobs] == [
        ("erp-outage", "ERP outage over", 2)
    ]
    # Started with the filter its dry run pinned, not one that would take later failures in.
    assert set(jobs[0]["filter"]) == {"state", "updated_until"}
    for cid in (second, third):
        assert state_of(api_url, ops, cid) in ("pending", "running", "retrying", "posted")


def test_status_prints_readiness_sla_and_exceptions(
    api_url: str, api_keys: dict[Role, str]
) -> None:
    post_invoice(api_url)

    result = ops_cli(api_url, api_keys[Role.VIEWER], "status", "--window", "1h")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"API {api_url}: ready (database ok, redis ok)"
    assert "SLA, last 1h, by workflow:" in lines
    header = lines[lines.index("SLA, last 1h, by workflow:") + 1]
    assert header.split()[:4] == ["workflow", "target", "total", "posted"]
    [invoice] = [line for line in lines if line.startswith("invoice")]
    assert invoice.split()[2] == "1"
    assert lines[-1] == "open exceptions: 0"


async def test_keys_through_the_api_are_audited(
    api_url: str, api_keys: dict[Role, str], database_url: str
) -> None:
    admin = api_keys[Role.ADMIN]

    created = ops_cli(api_url, admin, "keys", "create", "--role", "viewer", "--name", "carol")
    listed = ops_cli(api_url, admin, "keys", "list")
    refused = ops_cli(
        api_url, api_keys[Role.OPS], "keys", "create", "--role", "admin", "--name", "x"
    )
    key = created.stdout.strip()
    works = httpx.get(f"{api_url}/v1/transactions", headers=auth(key))
    key_id = next(line.split("\t")[0] for line in listed.stdout.splitlines() if "\tcarol\t" in line)
    revoked = ops_cli(api_url, admin, "keys", "revoke", key_id)
    again = ops_cli(api_url, admin, "keys", "revoke", "99999")
    after = httpx.get(f"{api_url}/v1/transactions", headers=auth(key))
    audit = httpx.get(f"{api_url}/v1/audit", headers=auth(admin)).json()

    assert created.returncode == 0, created.stderr
    assert created.stdout == f"{key}\n"
    assert KEY_PATTERN.match(key)
    assert (works.status_code, after.status_code) == (200, 401)
    assert revoked.returncode == 0, revoked.stderr
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr.startswith("HTTP 403 forbidden: ")
    assert again.returncode == 1
    assert again.stderr.startswith("HTTP 404 not_found: ")
    rows = audit["items"]
    actions = {(r["actor"], r["action"], r["outcome"]) for r in rows}
    assert ("test-admin", "key.create", "succeeded") in actions
    assert ("test-admin", "key.revoke", "succeeded") in actions
    assert ("test-ops", "POST /v1/keys", "denied") in actions
    # Without a key, `concord keys` still works on the database (the first admin key).
    direct = concord("keys", "list", env={"CONCORD_DATABASE_URL": database_url})
    assert "\tcarol\t" in direct.stdout


def test_errors_show_the_api_code_and_exit_non_zero(
    api_url: str, api_keys: dict[Role, str]
) -> None:
    ops = api_keys[Role.OPS]

    missing = ops_cli(api_url, ops, "replay", "no-such-id", "--reason", "x")
    no_filter = ops_cli(api_url, ops, "replay", "--reason", "x")
    no_reason = ops_cli(api_url, ops, "replay", "--state", "exception")
    unreachable = ops_cli("http://127.0.0.1:9", ops, "exceptions")
    bad_key = ops_cli(api_url, "ck_00000000_nope", "status")

    assert missing.returncode == 1
    assert missing.stderr.startswith("HTTP 404 not_found: ")
    assert no_filter.returncode == 2
    assert "a filter" in no_filter.stderr
    assert no_reason.returncode == 2
    assert "--reason" in no_reason.stderr
    assert unreachable.returncode == 2
    assert "cannot reach the API at http://127.0.0.1:9" in unreachable.stderr
    assert bad_key.returncode == 1
    assert "HTTP 401 " in bad_key.stderr
