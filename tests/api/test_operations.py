"""GET /v1/operations: queue depth, worker heartbeats and the sweeper's last run from Redis,
pressure per target from lineage; a Redis outage answers 503 in the error shape."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.main import create_app
from api.settings import ApiSettings
from lineage.enums import Role, TxState
from orchestrator.client.queue import (
    HEALTH_CHECK_INTERVAL_S,
    HEALTH_CHECK_KEY,
    QUEUE_NAME,
    SWEEPER_LAST_RUN_KEY,
    enqueue_wakeup,
    queue_pool,
)
from orchestrator.settings import OrchestratorSettings
from orchestrator.worker import build_worker
from tests.api.builders import add_run, add_transaction
from tests.api.helpers import auth, ok
from tests.factories import WEBHOOK_SECRET, new_invoice, signed_headers, stripe_event
from tests.support.servers import serve_in_thread


async def _operations(client: httpx.AsyncClient, key: str) -> dict[str, Any]:
    body = ok(await client.get("/v1/operations", headers=auth(key)))
    assert isinstance(body, dict)
    return body


async def test_an_idle_system_says_no_worker_and_no_sweep(
    client: httpx.AsyncClient, api_keys: dict[Role, str]
) -> None:
    body = await _operations(client, api_keys[Role.VIEWER])

    assert body["queue"] == {
        "name": QUEUE_NAME,
        "total": 0,
        "ready": 0,
        "deferred": 0,
        "next_deferred_at": None,
    }
    assert body["workers"] == {
        "health_check_interval_s": HEALTH_CHECK_INTERVAL_S,
        "reported": [],
        "note": "no worker reported",
    }
    assert body["sweeper"] is None
    assert body["sweeper_note"] == "no sweeper run recorded"
    assert body["by_target"] == []


async def test_queue_depth_splits_ready_from_deferred(
    client: httpx.AsyncClient, api_keys: dict[Role, str], redis_url: str
) -> None:
    redis = queue_pool(redis_url)
    later = datetime.now(UTC) + timedelta(hours=1)
    try:
        assert await enqueue_wakeup(redis, "cid-ready-1")
        assert await enqueue_wakeup(redis, "cid-ready-2")
        assert await enqueue_wakeup(redis, "cid-later", defer_until=later, due="later")

        body = await _operations(client, api_keys[Role.EXECUTIVE])
    finally:
        await redis.aclose()

    queue = body["queue"]
    assert (queue["total"], queue["ready"], queue["deferred"]) == (3, 2, 1)
    next_at = datetime.fromisoformat(queue["next_deferred_at"])
    assert abs((next_at - later).total_seconds()) < 0.01


async def test_a_real_worker_reports_its_heartbeat_and_sweep(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    worker_settings: OrchestratorSettings,
) -> None:
    # A transaction for the worker's start-up sweep to find.
    event = stripe_event(invoice=new_invoice())
    raw = json.dumps(event).encode()
    intake = await client.post("/v1/webhooks/stripe", content=raw, headers=signed_headers(raw))
    assert intake.status_code == 202, intake.text
    cid = intake.json()["correlation_id"]
    started = datetime.now(UTC)
    # tests.workers.run_burst closes the worker, and arq deletes its health-check key on close:
    # run the same burst worker's main() here and close it only after reading the endpoint.
    worker = build_worker(worker_settings, burst=True, handle_signals=False, poll_delay=0.02)
    try:
        await worker.main()
        alive = await _operations(client, api_keys[Role.VIEWER])
        assert await worker.pool.exists(HEALTH_CHECK_KEY)
    finally:
        await worker.close()
    stopped = await _operations(client, api_keys[Role.VIEWER])

    [health] = alive["workers"]["reported"]
    assert alive["workers"]["note"] is None
    assert health["key"] == HEALTH_CHECK_KEY == "concord:queue:health-check"
    assert "j_complete=" in health["value"]
    assert 0 < health["ttl_ms"] <= (HEALTH_CHECK_INTERVAL_S + 1) * 1000
    assert 0 <= health["age_s"] <= HEALTH_CHECK_INTERVAL_S + 1
    assert set(health["counters"]) >= {"j_complete", "j_failed", "j_retried", "j_ongoing"}
    assert datetime.fromisoformat(health["last_heartbeat_at"]) >= started - timedelta(seconds=1)
    # The start-up sweep (which finds the received transaction) or a later cron sweep of the
    # same burst (which may find nothing left) recorded its run.
    sweeper = alive["sweeper"]
    assert sweeper is not None
    assert alive["sweeper_note"] is None
    assert sweeper["found"] >= 0
    assert 0 <= sweeper["queued"] <= sweeper["found"]
    assert datetime.fromisoformat(sweeper["at"]) >= started - timedelta(seconds=1)
    assert sweeper["age_s"] >= 0
    assert alive["queue"]["total"] == 0  # a burst worker stops on an empty queue
    # A cleanly stopped worker deletes its key; the sweeper's record stays.
    assert stopped["workers"] == {
        "health_check_interval_s": HEALTH_CHECK_INTERVAL_S,
        "reported": [],
        "note": "no worker reported",
    }
    assert stopped["sweeper"]["at"] == sweeper["at"]
    detail = ok(await client.get(f"/v1/transactions/{cid}", headers=auth(api_keys[Role.VIEWER])))
    assert isinstance(detail, dict)
    assert detail["state"] == "posted"


async def test_the_sweeper_record_is_read_as_written(
    client: httpx.AsyncClient, api_keys: dict[Role, str], redis_url: str
) -> None:
    redis = queue_pool(redis_url)
    at = datetime.now(UTC) - timedelta(seconds=30)
    try:
        await redis.set(
            SWEEPER_LAST_RUN_KEY, json.dumps({"at": at.isoformat(), "found": 4, "queued": 3})
        )
        good = await _operations(client, api_keys[Role.FINANCE])
        record = {"at": at.isoformat(), "found": 4, "queued": 1, "already_queued": 3}
        await redis.set(SWEEPER_LAST_RUN_KEY, json.dumps(record))
        behind = await _operations(client, api_keys[Role.FINANCE])
        await redis.set(SWEEPER_LAST_RUN_KEY, b"not json")
        bad = await _operations(client, api_keys[Role.FINANCE])
    finally:
        await redis.aclose()

    assert (good["sweeper"]["found"], good["sweeper"]["queued"]) == (4, 3)
    assert good["sweeper"]["already_queued"] == 0  # a record from before the field
    assert (behind["sweeper"]["queued"], behind["sweeper"]["already_queued"]) == (1, 3)
    assert datetime.fromisoformat(good["sweeper"]["at"]) == at
    assert 29 <= good["sweeper"]["age_s"] < 60
    assert bad["sweeper"] is None
    assert "unreadable" in bad["sweeper_note"]


async def test_pressure_counts_transactions_by_the_target_of_their_latest_step(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        for state in (TxState.RETRYING, TxState.RETRYING, TxState.EXCEPTION, TxState.POSTED):
            tx = await add_transaction(session, state=state)
            await add_run(session, tx, succeeded=state is TxState.POSTED)
        # Retrying without any step yet: no target to count it against.
        await add_transaction(session, state=TxState.RETRYING)

    body = await _operations(client, api_keys[Role.OPS])

    assert body["by_target"] == [
        {"target_system": "erp", "state": "exception", "transactions": 1},
        {"target_system": "erp", "state": "retrying", "transactions": 2},
    ]


async def test_redis_down_answers_503_in_the_error_shape(
    database_url: str, api_keys: dict[Role, str]
) -> None:
    # Nothing listens on port 9 (discard): every Redis call is refused.
    settings = ApiSettings(
        database_url=database_url,
        redis_url="redis://127.0.0.1:9/0",
        stripe_webhook_secret=WEBHOOK_SECRET,
    )
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            response = await http.get("/v1/operations", headers=auth(api_keys[Role.VIEWER]))

    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == "redis_unavailable"
    assert error["details"]["error"] in {"ConnectionError", "TimeoutError"}
