"""SLA figures and /metrics against hand-built transactions with known timings."""

from datetime import timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.settings import ApiSettings
from lineage.clock import utc_now
from lineage.enums import Role, TxState
from tests.api.builders import add_run, add_transaction
from tests.api.helpers import auth, ok


@pytest.fixture
def api_settings(database_url: str, redis_url: str) -> ApiSettings:
    return ApiSettings(
        database_url=database_url,
        redis_url=redis_url,
        sla_targets_s={"invoice_generated": 300, "renewal": 60},
    )


@pytest.fixture
async def timings(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """invoice_generated (SLA 300 s): 10 posted in 10..100 s, 1 posted in 400 s, 1 running for
    an hour (overdue, USD 5000), 1 exception for 2 h (EUR 700), 1 received 10 s ago, plus one
    outside the window and one ignored. renewal (SLA 60 s): posted in 30 s and in 90 s."""
    now = utc_now()
    async with sessionmaker.begin() as session:
        for seconds in range(10, 101, 10):
            tx = await add_transaction(
                session,
                state=TxState.POSTED,
                received_at=now - timedelta(hours=2),
                completed_after_s=seconds,
            )
            await add_run(session, tx, succeeded=True, erp_id=f"INV-{seconds}")
        late = await add_transaction(
            session,
            state=TxState.POSTED,
            received_at=now - timedelta(hours=3),
            completed_after_s=400,
        )
        await add_run(session, late, succeeded=True, erp_id="INV-LATE")
        await add_transaction(
            session, state=TxState.RUNNING, received_at=now - timedelta(hours=1), amount_minor=5000
        )
        failed = await add_transaction(
            session,
            state=TxState.EXCEPTION,
            received_at=now - timedelta(hours=2),
            amount_minor=700,
            currency="EUR",
        )
        await add_run(session, failed, succeeded=False)
        await add_transaction(
            session, state=TxState.PENDING, received_at=now - timedelta(seconds=10)
        )
        await add_transaction(
            session,
            state=TxState.POSTED,
            received_at=now - timedelta(hours=30),
            completed_after_s=5,
        )
        await add_transaction(session, state=TxState.IGNORED, workflow=None)
        for seconds in (30, 90):
            await add_transaction(
                session,
                state=TxState.POSTED,
                workflow="renewal",
                received_at=now - timedelta(hours=5),
                completed_after_s=seconds,
            )


@pytest.mark.usefixtures("timings")
async def test_summary_by_workflow(client: httpx.AsyncClient, api_keys: dict[Role, str]) -> None:
    body = ok(
        await client.get(
            "/v1/sla/summary",
            params={"window": "24h", "group_by": "workflow"},
            headers=auth(api_keys[Role.EXECUTIVE]),
        )
    )

    assert isinstance(body, dict)
    groups = {g["group"]: g for g in body["groups"]}
    assert groups["invoice_generated"] == {
        "group": "invoice_generated",
        "sla_target_s": 300.0,
        "total": 14,
        "posted": 11,
        "met": 10,
        "breached": 3,
        "overdue": 1,
        "open_exceptions": 1,
        "attainment_pct": 76.92,
        "p50_s": 60.0,
        "p95_s": 400.0,
        "p99_s": 400.0,
        "throughput_per_hour": round(11 / 24, 4),
        "money_at_risk": {"EUR": 700, "USD": 5000},
    }
    renewal = groups["renewal"]
    assert (renewal["sla_target_s"], renewal["total"], renewal["met"], renewal["breached"]) == (
        60.0,
        2,
        1,
        1,
    )
    assert (renewal["attainment_pct"], renewal["p50_s"], renewal["p95_s"]) == (50.0, 30.0, 90.0)
    assert set(groups) == {"invoice_generated", "renewal"}


@pytest.mark.usefixtures("timings")
async def test_summary_by_target(client: httpx.AsyncClient, api_keys: dict[Role, str]) -> None:
    body = ok(
        await client.get(
            "/v1/sla/summary", params={"group_by": "target"}, headers=auth(api_keys[Role.VIEWER])
        )
    )

    assert isinstance(body, dict)
    groups = {g["group"]: g for g in body["groups"]}
    erp, none = groups["erp"], groups["none"]
    assert (erp["total"], erp["met"], erp["breached"], erp["overdue"]) == (12, 10, 2, 0)
    assert erp["money_at_risk"] == {"EUR": 700}
    # Transactions with no step yet: the stuck one, the young one, and the two renewals.
    assert (none["total"], none["met"], none["breached"], none["overdue"]) == (4, 1, 2, 1)
    assert none["sla_target_s"] is None
    assert none["money_at_risk"] == {"USD": 5000}


@pytest.mark.usefixtures("timings")
async def test_timeseries_buckets(client: httpx.AsyncClient, api_keys: dict[Role, str]) -> None:
    body = ok(
        await client.get(
            "/v1/sla/timeseries",
            params={"window": "24h", "bucket": "1h", "workflow": "invoice_generated"},
            headers=auth(api_keys[Role.VIEWER]),
        )
    )

    assert isinstance(body, dict)
    buckets = body["buckets"]
    assert len(buckets) in (24, 25)
    starts = [b["start"] for b in buckets]
    assert starts == sorted(starts)
    assert sum(b["figures"]["total"] for b in buckets) == 14
    busiest = max(buckets, key=lambda b: b["figures"]["total"])["figures"]
    assert (busiest["total"], busiest["met"], busiest["breached"], busiest["posted"]) == (
        11,
        10,
        1,
        10,
    )
    assert busiest["money_at_risk"] == {"EUR": 700}


async def test_bad_windows_are_refused(
    client: httpx.AsyncClient, api_keys: dict[Role, str]
) -> None:
    viewer = auth(api_keys[Role.VIEWER])

    bad = await client.get("/v1/sla/summary", params={"window": "1y"}, headers=viewer)
    huge = await client.get("/v1/sla/summary", params={"window": "400d"}, headers=viewer)
    fine = await client.get(
        "/v1/sla/timeseries", params={"window": "31d", "bucket": "1m"}, headers=viewer
    )

    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_request")
    assert (huge.status_code, huge.json()["error"]["code"]) == (422, "invalid_duration")
    assert (fine.status_code, fine.json()["error"]["code"]) == (422, "too_many_buckets")


@pytest.mark.usefixtures("timings")
async def test_metrics_exposes_the_same_figures_with_bounded_labels(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = set(response.text.splitlines())
    assert 'concord_sla_attainment_ratio{workflow="invoice_generated"} 0.7692' in lines
    assert 'concord_overdue_transactions{workflow="invoice_generated"} 1.0' in lines
    assert 'concord_sla_breaches{workflow="invoice_generated"} 3.0' in lines
    assert 'concord_e2e_latency_seconds{quantile="0.5",workflow="invoice_generated"} 60.0' in lines
    assert 'concord_money_at_risk_minor{currency="EUR",workflow="invoice_generated"} 700.0' in lines
    assert 'concord_transactions{state="posted",workflow="invoice_generated"} 12.0' in lines
    assert 'concord_transactions{state="ignored",workflow="none"} 1.0' in lines
    assert (
        'concord_open_exceptions{classification="retry_budget_exhausted",workflow="invoice_generated"} 1.0'
        in lines
    )
