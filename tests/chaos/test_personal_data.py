"""Personal data canaries: unique e-mail addresses, phone numbers and card-like numbers in event
payloads reach the event store and the ERP (which must hold the invoice), and nowhere else:
not the API's or the workers' logs, not Redis, not step, attempt, exception or audit rows, not
what viewers and executives are shown (lists, details, lineage, search, exceptions, CSV, SLA,
operations). Raw payloads go to admins alone."""

import json
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.enums import Role
from lineage.models import (
    AuditLog,
    BusinessTransaction,
    ExceptionItem,
    ExternalRef,
    InboxEvent,
    StepAttempt,
    WorkflowRun,
    WorkflowStep,
)
from tests.api.helpers import auth
from tests.chaos.harness import WORKER_COMMAND, System, running_system, wait_posted
from tests.chaos.history import History
from tests.chaos.test_api_crash import api_process
from tests.factories import FIXTURE_INVOICE

EVENTS = 12


def _canaries() -> dict[str, str]:
    tag = secrets.token_hex(5)
    digits = "".join(str(secrets.randbelow(10)) for _ in range(15))
    return {
        "email": f"canary.{tag}@example.invalid",
        "phone": f"+1555{secrets.randbelow(10**7):07d}",
        "card": f"4{digits}",
        "name": f"Canary Person {tag}",
    }


def _invoice(canary: dict[str, str]) -> dict[str, object]:
    """The fixture invoice carrying canaries wherever Stripe puts customer details."""
    lines = json.loads(json.dumps(FIXTURE_INVOICE["lines"]))
    # Free text on a line, as people write it: it maps into the canonical invoice.
    lines["data"][0]["description"] = f"Seats for {canary['name']} ({canary['email']})"
    return {
        "id": f"in_{secrets.token_hex(12)}",
        "customer_email": canary["email"],
        "customer_phone": canary["phone"],
        "customer_name": canary["name"],
        "customer_address": {"line1": f"card {canary['card']}", "city": "Springfield"},
        "description": f"Call {canary['phone']} about card {canary['card']}",
        "footer": canary["email"],
        "metadata": {"card_number": canary["card"], "contact": canary["phone"]},
        "lines": lines,
    }


def _found(text: str, canaries: list[dict[str, str]]) -> set[str]:
    values = {v for c in canaries for v in c.values()}
    # Card numbers are also matched with separators, as a formatter might print them.
    spaced = {" ".join(re.findall(".{1,4}", c["card"])) for c in canaries}
    return {v for v in values | spaced if v in text}


def _start_logged_worker(system: System, log: Path) -> None:
    with log.open("ab") as sink:
        system.workers.append(
            subprocess.Popen(
                WORKER_COMMAND,
                env=system.worker_env(),
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        )


def _redis_dump(url: str) -> str:
    client = redis.Redis.from_url(url)
    parts: list[str] = []
    for key in client.scan_iter(count=500):
        raw_kind: bytes = client.type(key)  # type: ignore[assignment]
        kind = raw_kind.decode()
        value: Any = None
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = client.xrange(key)
        parts.append(f"{key!r} {value!r}")
    client.close()
    return "\n".join(parts)


async def _rows_dump(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    """Every lineage row but the event store, as text, by table."""
    dumps: dict[str, str] = {}
    async with sessionmaker() as session:
        for model in (
            WorkflowRun,
            WorkflowStep,
            StepAttempt,
            ExternalRef,
            ExceptionItem,
            AuditLog,
        ):
            rows = await session.scalars(select(model))
            dumps[model.__tablename__] = "\n".join(repr(r.__dict__) for r in rows)
        txs = await session.scalars(select(BusinessTransaction))
        # The canonical input is the mapped event (ops and admins may read it); the rest is not.
        dumps["business_transaction (but canonical)"] = "\n".join(
            repr({k: v for k, v in t.__dict__.items() if k != "canonical"}) for t in txs
        )
    return dumps


async def _viewer_views(
    client: httpx.AsyncClient, key: str, canary: dict[str, str]
) -> dict[str, str]:
    headers = auth(key)
    listed = await client.get("/v1/transactions", params={"limit": 200}, headers=headers)
    views = {"transactions": listed.text}
    ids = [str(t["correlation_id"]) for t in listed.json()["items"]]
    views["csv"] = (
        await client.get("/v1/transactions", params={"format": "csv"}, headers=headers)
    ).text
    for cid in ids[:5]:
        views[f"detail {cid}"] = (await client.get(f"/v1/transactions/{cid}", headers=headers)).text
        views[f"lineage {cid}"] = (await client.get(f"/v1/lineage/{cid}", headers=headers)).text
    for term in (canary["email"], canary["phone"], canary["card"], ids[0]):
        found = await client.get("/v1/search", params={"q": term}, headers=headers)
        # The answer echoes the caller's own query; what it found is what must not leak.
        views[f"search {term}"] = json.dumps(found.json()["items"])
    for path in ("/v1/exceptions", "/v1/sla/summary", "/v1/sla/timeseries", "/v1/operations"):
        views[path] = (await client.get(path, headers=headers)).text
    return views


async def test_personal_data_stays_in_the_event_store(
    database_url: str,
    redis_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    api_keys: dict[Role, str],
    tmp_path: Path,
) -> None:
    canaries = [_canaries() for _ in range(EVENTS)]
    history = History()
    api_log, worker_log = tmp_path / "api.log", tmp_path / "worker.log"
    with running_system(database_url, redis_url) as system:
        _start_logged_worker(system, worker_log)
        _start_logged_worker(system, worker_log)
        with api_process(system, api_log, fault=""):
            for canary in canaries:
                await history.send_invoices(system, 1, invoice=_invoice(canary))
            assert await wait_posted(sessionmaker, EVENTS, timeout_s=90) == EVENTS
            async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as client:
                seen = {
                    role: await _viewer_views(client, api_keys[role], canaries[0])
                    for role in (Role.VIEWER, Role.EXECUTIVE, Role.FINANCE)
                }
                cid = json.loads(seen[Role.VIEWER]["transactions"])["items"][0]["correlation_id"]
                as_admin = (
                    await client.get(f"/v1/transactions/{cid}", headers=auth(api_keys[Role.ADMIN]))
                ).json()
                as_ops = (
                    await client.get(f"/v1/transactions/{cid}", headers=auth(api_keys[Role.OPS]))
                ).json()
            redis_text = _redis_dump(redis_url)
        system.stop_workers()
    rows = await _rows_dump(sessionmaker)
    async with sessionmaker() as session:
        stored = "\n".join(json.dumps(e.payload) for e in await session.scalars(select(InboxEvent)))

    leaks = {
        f"{role} {view}": sorted(found)
        for role, views in seen.items()
        for view, text in views.items()
        if (found := _found(text, canaries))
    }
    leaks |= {
        f"row {table}": sorted(f) for table, text in rows.items() if (f := _found(text, canaries))
    }
    leaks |= {
        name: sorted(found)
        for name, text in (
            ("API log", api_log.read_text()),
            ("worker log", worker_log.read_text()),
            ("Redis", redis_text),
        )
        if (found := _found(text, canaries))
    }
    # The canaries were really there: in the event store and the admin's view.
    assert all(c["email"] in stored and c["card"] in stored for c in canaries)
    assert _found(json.dumps(as_admin["event"]["payload"]), canaries)
    # Ops see the canonical input (to edit a replay) but never the raw payload.
    assert as_ops["event"].get("payload") is None
    assert "payload" not in seen[Role.VIEWER][f"detail {cid}"]
    # The API and workers did log (so an empty log cannot pass for a clean one).
    assert api_log.read_text().count('"logger"') > EVENTS
    assert worker_log.read_text().count('"logger"') > 0
    assert leaks == {}
