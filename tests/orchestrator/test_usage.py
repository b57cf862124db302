"""Usage: 10,000 events over HTTP become one ERP posting per subscription and period, once.

Real API over HTTP, real arq worker, the sandbox ERP over HTTP, on SQLite and PostgreSQL.
"""

import asyncio
import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.enums import Role, TxState
from lineage.models import BusinessTransaction, UsageRecord
from orchestrator import jobs, usage
from orchestrator.client.queue import QUEUE_NAME, queue_pool
from orchestrator.client.usage import UsageLine, UsageSummary
from orchestrator.connectors.errors import Terminal
from orchestrator.settings import OrchestratorSettings
from orchestrator.worker import build_worker
from sandbox.traffic import run_traffic
from tests.workers import run_burst

CE_JSON = "application/cloudevents+json"
CE_BATCH = "application/cloudevents-batch+json"
# Both long closed whatever day the suite runs (the clock is 2026-11 or later).
PERIODS = ("2026-08", "2026-09")
UNIT_MINOR = {"api_calls": 2, "storage_gb": 150}
SOURCE = "/meter/acme"


def usage_event(
    event_id: str,
    *,
    subscription: str = "sub_u1",
    metric: str = "api_calls",
    quantity: int = 1,
    occurred_at: str = "2026-09-15T12:00:00Z",
    **data: Any,
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": SOURCE,
        "type": "com.concord.usage.recorded",
        "datacontenttype": "application/json",
        "data": {
            "subscription_id": subscription,
            "customer_id": f"cus_{subscription}",
            "metric": metric,
            "quantity": quantity,
            "unit_amount_minor": UNIT_MINOR.get(metric, 1),
            "currency": "USD",
            "occurred_at": occurred_at,
            **data,
        },
    }


def _headers(key: str, content_type: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": content_type}


async def _send_batches(
    client: httpx.AsyncClient, key: str, events: list[dict[str, Any]], *, size: int = 250
) -> list[dict[str, Any]]:
    """POST the events as CloudEvents batches, four requests in flight at a time."""
    gate = asyncio.Semaphore(4)

    async def send(batch: list[dict[str, Any]]) -> dict[str, Any]:
        async with gate:
            response = await client.post(
                "/v1/events", content=json.dumps(batch), headers=_headers(key, CE_BATCH)
            )
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        return body

    batches = [events[i : i + size] for i in range(0, len(events), size)]
    return list(await asyncio.gather(*(send(b) for b in batches)))


async def _count(sessionmaker: async_sessionmaker[AsyncSession], model: Any) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _summaries(sessionmaker: async_sessionmaker[AsyncSession]) -> list[BusinessTransaction]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(BusinessTransaction)
            .where(BusinessTransaction.workflow == "usage_summary")
            .order_by(BusinessTransaction.received_at)
        )
        return list(rows)


def _usage_postings(sandbox_url: str) -> list[dict[str, Any]]:
    ledger = httpx.get(f"{sandbox_url}/erp/_admin/ledger").json()["records"]
    return [
        r for r in ledger if r["type"] == "journalentry" and r["external_id"].startswith("usage:")
    ]


def _journal(sandbox_url: str, external_id: str) -> dict[str, Any]:
    response = httpx.get(f"{sandbox_url}/erp/record/v1/journalentry/eid:{external_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _enqueue_summarise(redis_url: str, *job_ids: str) -> None:
    pool = queue_pool(redis_url)
    try:
        for job_id in job_ids:
            await pool.enqueue_job(jobs.SUMMARISE_USAGE, _job_id=job_id, _queue_name=QUEUE_NAME)
    finally:
        await pool.aclose()


async def test_ten_thousand_usage_events_become_one_erp_posting_per_subscription_and_period(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    sandbox_url: str,
    redis_url: str,
    worker_settings: OrchestratorSettings,
) -> None:
    rng = random.Random(3)
    subscriptions = [f"sub_u{n}" for n in range(5)]
    events: list[dict[str, Any]] = []
    quantity: Counter[tuple[str, str, str]] = Counter()
    amount: Counter[tuple[str, str]] = Counter()
    for n in range(10_000):
        sub, period = rng.choice(subscriptions), rng.choice(PERIODS)
        metric = "api_calls" if n % 4 else "storage_gb"
        qty = rng.randint(1, 500)
        at = f"{period}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"
        events.append(
            usage_event(f"u-{n:05d}", subscription=sub, metric=metric, quantity=qty, occurred_at=at)
        )
        quantity[sub, period, metric] += qty
        amount[sub, period] += qty * UNIT_MINOR[metric]

    answers = await _send_batches(client, api_keys[Role.INGEST], events)
    assert sum(a["accepted"] for a in answers) == 10_000
    # A redelivered batch is counted once: every event in it is a duplicate.
    [again] = await _send_batches(client, api_keys[Role.INGEST], events[:250])
    assert (again["accepted"], again["duplicates"]) == (0, 250)

    # Acknowledged means stored; and no usage event is a transaction of its own.
    assert await _count(sessionmaker, UsageRecord) == 10_000
    assert await _count(sessionmaker, BusinessTransaction) == 0

    # The scheduled job, through arq, then the engine posting what it made.
    await _enqueue_summarise(redis_url, "usage-run-1")
    await run_burst(worker_settings)

    summaries = await _summaries(sessionmaker)
    assert len(summaries) == len(subscriptions) * len(PERIODS)
    assert {tx.state for tx in summaries} == {TxState.POSTED}
    postings = _usage_postings(sandbox_url)
    assert len(postings) == len(subscriptions) * len(PERIODS)
    assert all(p["create_calls"] == 1 for p in postings)
    by_id = {p["external_id"]: p for p in postings}
    for sub in subscriptions:
        for period in PERIODS:
            external_id = f"usage:{sub}:{period}:USD"
            assert by_id[external_id]["total"] == pytest.approx(amount[sub, period] / 100)
            memo = _journal(sandbox_url, external_id)["memo"]
            for metric in UNIT_MINOR:
                assert f"{metric}={quantity[sub, period, metric]}" in memo
    async with sessionmaker() as session:
        uncounted = await session.scalar(
            select(func.count()).where(UsageRecord.summary_correlation_id.is_(None))
        )
    assert uncounted == 0


async def test_single_usage_event_is_stored_once_and_redeliveries_are_counted(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    headers = _headers(api_keys[Role.INGEST], CE_JSON)
    event = usage_event("u-single", quantity=7)

    first = await client.post("/v1/events", content=json.dumps(event), headers=headers)
    again = await client.post("/v1/events", content=json.dumps(event), headers=headers)
    changed = usage_event("u-single", quantity=8)
    conflict = await client.post("/v1/events", content=json.dumps(changed), headers=headers)

    assert first.status_code == 202, first.text
    assert first.json() == {
        "id": "u-single",
        "status": "accepted",
        "duplicate": False,
        "correlation_id": None,
        "usage_key": "usage:sub_u1:2026-09:USD",
    }
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "event_id_conflict"
    async with sessionmaker() as session:
        [row] = (await session.scalars(select(UsageRecord))).all()
    assert (row.quantity, row.amount_minor, row.deliveries, row.period) == (7, 14, 2, "2026-09")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"quantity": -1}, "quantity"),
        ({"occurred_at": "2026-09-15T12:00:00"}, "occurred_at"),
        ({"currency": "usd"}, "currency"),
        ({"metric": "api calls!"}, "metric"),
        ({"unit_amount_minor": "free"}, "unit_amount_minor"),
        ({"surprise": 1}, "surprise"),
        ({"occurred_at": "2099-01-01T00:00:00Z"}, "in the future"),
    ],
)
async def test_invalid_usage_event_is_refused_with_the_reason_and_nothing_stored(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    data: dict[str, Any],
    reason: str,
) -> None:
    bad = usage_event("u-bad", **data)
    single = await client.post(
        "/v1/events", content=json.dumps(bad), headers=_headers(api_keys[Role.INGEST], CE_JSON)
    )
    # In a batch, one bad event refuses the whole batch: the good ones are not stored either.
    batch = [usage_event("u-good-1"), bad, usage_event("u-good-2")]
    batched = await client.post(
        "/v1/events", content=json.dumps(batch), headers=_headers(api_keys[Role.INGEST], CE_BATCH)
    )

    assert single.status_code == 400, single.text
    assert single.json()["error"]["code"] == "not_an_event"
    assert reason in single.json()["error"]["message"]
    assert batched.status_code == 400, batched.text
    assert batched.json()["error"]["details"] == {"index": 1, "id": "u-bad"}
    assert reason in batched.json()["error"]["message"]
    assert await _count(sessionmaker, UsageRecord) == 0
    assert await _count(sessionmaker, BusinessTransaction) == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("{}", "not_an_event"),
        ("[]", "empty_batch"),
        ('["x"]', "not_an_event"),
        ("[", "not_an_event"),
    ],
)
async def test_malformed_batch_is_refused(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    body: str,
    code: str,
) -> None:
    response = await client.post(
        "/v1/events", content=body, headers=_headers(api_keys[Role.INGEST], CE_BATCH)
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    assert await _count(sessionmaker, UsageRecord) == 0


async def test_the_same_batch_sent_concurrently_is_stored_once(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    events = [usage_event(f"u-{n}", quantity=n + 1) for n in range(200)]

    answers = await asyncio.gather(
        *(_send_batches(client, api_keys[Role.INGEST], events) for _ in range(3))
    )

    results = [a for batches in answers for a in batches]
    assert sum(a["accepted"] for a in results) == 200
    assert sum(a["duplicates"] for a in results) == 400
    async with sessionmaker() as session:
        count, total = (
            await session.execute(select(func.count(), func.sum(UsageRecord.quantity)))
        ).one()
    assert (count, total) == (200, sum(range(1, 201)))


async def test_a_batch_conflicting_with_a_stored_event_stores_nothing(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    headers = _headers(api_keys[Role.INGEST], CE_BATCH)
    stored = await client.post(
        "/v1/events", content=json.dumps([usage_event("u-1")]), headers=headers
    )
    assert stored.status_code == 202, stored.text

    batch = [usage_event("u-2"), usage_event("u-1", quantity=99)]
    refused = await client.post("/v1/events", content=json.dumps(batch), headers=headers)

    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["details"] == {"ids": ["u-1"]}
    assert await _count(sessionmaker, UsageRecord) == 1


async def test_a_batch_may_mix_usage_with_events_that_start_transactions(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    invoice = {
        "specversion": "1.0",
        "id": "inv-gen-7",
        "source": "/billing/acme",
        "type": "com.concord.invoice.generated",
        "data": {
            "invoice_id": "INV-7",
            "customer_id": "CUST-7",
            "amount_minor": 500,
            "currency": "EUR",
        },
    }
    batch = [usage_event("u-mix"), invoice]
    response = await client.post(
        "/v1/events", content=json.dumps(batch), headers=_headers(api_keys[Role.INGEST], CE_BATCH)
    )

    assert response.status_code == 202, response.text
    usage_result, invoice_result = response.json()["events"]
    assert usage_result["usage_key"] == "usage:sub_u1:2026-09:USD"
    assert usage_result["correlation_id"] is None
    async with sessionmaker() as session:
        tx = await session.get(BusinessTransaction, invoice_result["correlation_id"])
    assert tx is not None
    assert tx.workflow == "invoice_generated"
    assert await _count(sessionmaker, UsageRecord) == 1


async def test_aggregation_run_twice_and_concurrently_posts_each_summary_once(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    sandbox_url: str,
    redis_url: str,
    worker_settings: OrchestratorSettings,
) -> None:
    events = [
        usage_event(f"u-{n}", subscription=f"sub_c{n % 3}", quantity=n + 1) for n in range(60)
    ]
    await _send_batches(client, api_keys[Role.INGEST], events, size=20)
    now, grace = datetime.now(UTC), timedelta(hours=1)

    first, second = await asyncio.gather(
        usage.summarise_closed_periods(sessionmaker, now=now, grace=grace),
        usage.summarise_closed_periods(sessionmaker, now=now, grace=grace),
    )
    assert len(first) + len(second) == 3
    assert await usage.summarise_closed_periods(sessionmaker, now=now, grace=grace) == []
    # Two scheduled runs through arq find nothing more to summarise.
    await _enqueue_summarise(redis_url, "usage-run-a", "usage-run-b")
    await run_burst(worker_settings)

    summaries = await _summaries(sessionmaker)
    assert len(summaries) == 3
    assert {tx.state for tx in summaries} == {TxState.POSTED}
    postings = _usage_postings(sandbox_url)
    assert sorted(p["external_id"] for p in postings) == [
        f"usage:sub_c{n}:2026-09:USD" for n in range(3)
    ]
    assert all(p["create_calls"] == 1 for p in postings)
    assert sum(p["total"] for p in postings) == pytest.approx(sum(range(1, 61)) * 2 / 100)


async def test_late_usage_is_posted_as_a_visible_adjustment_and_open_periods_wait(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    sandbox_url: str,
    worker_settings: OrchestratorSettings,
) -> None:
    key = api_keys[Role.INGEST]
    now = datetime.now(UTC)
    current = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    await _send_batches(
        client,
        key,
        [usage_event("u-on-time", quantity=10), usage_event("u-now", occurred_at=current)],
    )
    grace = timedelta(hours=1)
    [summary_id] = await usage.summarise_closed_periods(sessionmaker, now=now, grace=grace)
    await run_burst(worker_settings)

    # Arrives after its period was summarised and posted.
    await _send_batches(client, key, [usage_event("u-late", quantity=3)])
    [adjustment_id] = await usage.summarise_closed_periods(sessionmaker, now=now, grace=grace)
    await run_burst(worker_settings)

    viewer = {"Authorization": f"Bearer {api_keys[Role.VIEWER]}"}
    found = await client.get(
        "/v1/search", params={"q": "usage:sub_u1:2026-09:USD:late1"}, headers=viewer
    )
    assert found.status_code == 200, found.text
    [hit] = found.json()["items"]
    assert hit["transaction"]["correlation_id"] == adjustment_id
    assert "event_id" in hit["matched_by"]
    detail = (await client.get(f"/v1/transactions/{adjustment_id}", headers=viewer)).json()
    [step] = detail["runs"][0]["steps"]
    assert (step["name"], step["state"]) == ("erp.post_usage_summary", "succeeded")
    assert step["external_id"] == "usage:sub_u1:2026-09:USD:late1"
    graph = await client.get(f"/v1/lineage/{adjustment_id}", headers=viewer)
    assert graph.status_code == 200, graph.text
    async with sessionmaker() as session:
        adjustment = await session.get(BusinessTransaction, adjustment_id)
        summary = await session.get(BusinessTransaction, summary_id)
        open_rows = await session.scalar(
            select(func.count()).where(UsageRecord.summary_correlation_id.is_(None))
        )
    assert summary is not None
    assert adjustment is not None
    assert (summary.state, summary.amount_minor) == (TxState.POSTED, 20)
    assert (adjustment.state, adjustment.amount_minor) == (TxState.POSTED, 6)
    assert adjustment.event_type == "com.concord.usage.adjusted"
    # The usage of the still-open current period waits for its period to close.
    assert open_rows == 1
    totals = {
        p["external_id"]: (p["total"], p["create_calls"]) for p in _usage_postings(sandbox_url)
    }
    assert totals == {
        "usage:sub_u1:2026-09:USD": (0.2, 1),
        "usage:sub_u1:2026-09:USD:late1": (0.06, 1),
    }
    assert (
        "late-usage adjustment 1" in _journal(sandbox_url, "usage:sub_u1:2026-09:USD:late1")["memo"]
    )


def test_usage_period_closes_after_the_grace() -> None:
    grace = timedelta(hours=1)
    assert (
        usage.first_open_period(datetime(2026, 10, 1, 0, 30, tzinfo=UTC), grace=grace) == "2026-09"
    )
    assert (
        usage.first_open_period(datetime(2026, 10, 1, 1, 0, tzinfo=UTC), grace=grace) == "2026-10"
    )


def test_a_free_summary_is_refused_with_the_reason() -> None:
    summary = UsageSummary(
        subscription_id="sub_1",
        customer_id="cus_1",
        period="2026-09",
        currency="USD",
        lines=[UsageLine(metric="api_calls", quantity=5, amount_minor=0, events=5)],
    )
    with pytest.raises(Terminal, match="totals 0"):
        usage.journal_entry(summary, receivable_account="1210", revenue_account="4100")


async def test_the_worker_schedules_aggregation_only_when_configured(
    worker_settings: OrchestratorSettings,
) -> None:
    def crons(every: int) -> set[str]:
        settings = worker_settings.model_copy(update={"usage_every_min": every})
        worker = build_worker(settings, handle_signals=False)
        return {job.name for job in worker.cron_jobs}

    assert jobs.SUMMARISE_USAGE in crons(5)
    assert jobs.SUMMARISE_USAGE not in crons(0)


async def test_traffic_meters_usage_including_a_closed_period_the_job_summarises(
    api_url: str,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    sandbox_url: str,
    worker_settings: OrchestratorSettings,
) -> None:
    report = await asyncio.to_thread(
        run_traffic,
        f"{sandbox_url}/billing",
        rate=1000,
        duration=0.05,
        seed=7,
        sleep=lambda _s: None,
        usage_api_url=api_url,
        usage_api_key=api_keys[Role.INGEST],
    )

    assert report.actions["usage_events"] > 0
    assert not [e for e in report.errors if e.startswith("usage:")], report.errors
    now = datetime.now(UTC)
    last_month = (now.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    async with sessionmaker() as session:
        periods = set(await session.scalars(select(UsageRecord.period).distinct()))
    assert {last_month, now.strftime("%Y-%m")} <= periods
    created = await usage.summarise_closed_periods(sessionmaker, now=now, grace=timedelta(0))
    await run_burst(worker_settings)
    postings = _usage_postings(sandbox_url)
    assert len(postings) == len(created) > 0
    assert all(p["external_id"].split(":")[2] == last_month for p in postings)
