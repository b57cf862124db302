"""Bulk replay jobs: the blast radius, cancellation, and resuming a job after a restart."""

import asyncio
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.main import create_app
from api.settings import ApiSettings
from lineage import bulk
from lineage.bulk_states import BulkItemOutcome
from lineage.clock import utc_now
from lineage.enums import Role, TxState
from lineage.models import BusinessTransaction
from tests.api.builders import add_run, add_transaction
from tests.api.helpers import audit_rows, auth, ok
from tests.support.servers import serve_in_thread


async def _failed(sessionmaker: async_sessionmaker[AsyncSession], n: int) -> list[str]:
    async with sessionmaker.begin() as session:
        txs = [await add_transaction(session, state=TxState.EXCEPTION) for _ in range(n)]
        for tx in txs:
            await add_run(session, tx, succeeded=False)
    return [tx.correlation_id for tx in txs]


async def _pending_job(sessionmaker: async_sessionmaker[AsyncSession], ids: list[str]) -> int:
    """A job as the API leaves it between its commit and its runner starting."""
    async with sessionmaker.begin() as session:
        job = await bulk.create(
            session,
            name="stalled",
            requested_by="test-ops",
            role="ops",
            reason="resume me",
            filter_doc={"state": ["exception"]},
            correlation_ids=ids,
            now=utc_now(),
        )
    return job.id


class TestBlastRadius:
    @pytest.fixture
    def api_settings(self, database_url: str, redis_url: str) -> ApiSettings:
        return ApiSettings(database_url=database_url, redis_url=redis_url, bulk_replay_max=2)

    async def test_a_set_beyond_the_cap_is_refused(
        self,
        client: httpx.AsyncClient,
        api_keys: dict[Role, str],
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        await _failed(sessionmaker, 3)
        ops = auth(api_keys[Role.OPS])
        body = {"filter": {"state": ["exception"]}, "reason": "too many"}

        preview = ok(await client.post("/v1/replays", json={**body, "dry_run": True}, headers=ops))
        refused = await client.post("/v1/replays", json={**body, "expected_count": 3}, headers=ops)
        no_count = await client.post("/v1/replays", json=body, headers=ops)

        assert isinstance(preview, dict)
        assert (preview["count"], preview["max_allowed"]) == (3, 2)
        assert (refused.status_code, refused.json()["error"]["code"]) == (
            422,
            "blast_radius_exceeded",
        )
        assert (no_count.status_code, no_count.json()["error"]["code"]) == (
            422,
            "expected_count_required",
        )
        async with sessionmaker() as session:
            assert len(await bulk.list_jobs(session, limit=10)) == 0


async def test_cancel_stops_a_job_and_its_untaken_items(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ids = await _failed(sessionmaker, 2)
    bulk_id = await _pending_job(sessionmaker, ids)
    ops = auth(api_keys[Role.OPS])

    cancelled = ok(await client.post(f"/v1/replays/{bulk_id}/cancel", headers=ops))
    again = await client.post(f"/v1/replays/{bulk_id}/cancel", headers=ops)
    detail = ok(await client.get(f"/v1/replays/{bulk_id}", headers=ops))
    # A runner that reaches an item after the cancel leaves it alone.
    async with sessionmaker.begin() as session:
        [(item_id, cid)] = [
            (i.id, i.correlation_id) for i in (await bulk.items(session, bulk_id))[:1]
        ]
        late = await bulk.replay_item(
            session, item_id, cid, requested_by="runner", reason="late", now=utc_now()
        )

    assert isinstance(cancelled, dict)
    assert (cancelled["state"], cancelled["cancelled_by"], cancelled["progress"]) == (
        "cancelled",
        "test-ops",
        {"cancelled": 2},
    )
    assert (again.status_code, again.json()["error"]["code"]) == (409, "bulk_replay_finished")
    assert isinstance(detail, dict)
    assert {i["outcome"] for i in detail["items"]} == {"cancelled"}
    assert late.outcome is None
    async with sessionmaker() as session:
        for cid in ids:
            tx = await session.get(BusinessTransaction, cid)
            assert tx is not None
            assert tx.state is TxState.EXCEPTION
    actions = [(r.action, r.outcome) for r in await audit_rows(sessionmaker)]
    assert actions == [
        ("bulk_replay.cancel", "succeeded"),
        ("bulk_replay.cancel", "rejected"),
    ]


async def test_an_unfinished_job_resumes_when_the_api_starts(
    api_settings: ApiSettings,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ids = await _failed(sessionmaker, 2)
    async with sessionmaker.begin() as session:
        busy = await add_transaction(session, state=TxState.RUNNING)
    bulk_id = await _pending_job(sessionmaker, [*ids, busy.correlation_id])

    with serve_in_thread(create_app(api_settings)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(100):
                job = ok(
                    await client.get(f"/v1/replays/{bulk_id}", headers=auth(api_keys[Role.OPS]))
                )
                assert isinstance(job, dict)
                if job["state"] == "completed":
                    break
                await asyncio.sleep(0.05)

    assert isinstance(job, dict)
    assert job["state"] == "completed"
    outcomes = {i["correlation_id"]: i["outcome"] for i in job["items"]}
    assert outcomes == {
        ids[0]: BulkItemOutcome.REPLAYED,
        ids[1]: BulkItemOutcome.REPLAYED,
        busy.correlation_id: BulkItemOutcome.SKIPPED_BUSY,
    }
    async with sessionmaker() as session:
        states = [(await session.get(BusinessTransaction, cid)) for cid in ids]
    assert [(tx.state, tx.run_count) for tx in states if tx] == [(TxState.PENDING, 2)] * 2
    replays = [r for r in await audit_rows(sessionmaker) if r.action == "transaction.replay"]
    assert sorted(r.target or "" for r in replays) == sorted(ids)
    assert {(r.actor, (r.detail or {}).get("bulk_replay_id")) for r in replays} == {
        ("test-ops", bulk_id)
    }


async def test_a_set_pinned_at_its_dry_run_keeps_later_failures_out(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    [before] = await _failed(sessionmaker, 1)
    await asyncio.sleep(0.01)
    pinned = utc_now()
    await asyncio.sleep(0.01)
    # Received before the pin, failed after it: a retry that ran out while ops confirmed.
    async with sessionmaker.begin() as session:
        later = await add_transaction(
            session, state=TxState.EXCEPTION, received_at=pinned - timedelta(minutes=1)
        )
        await add_run(session, later, succeeded=False)
    ops = auth(api_keys[Role.OPS])
    flt = {"state": ["exception"], "updated_until": pinned.isoformat()}

    preview = ok(
        await client.post("/v1/replays", json={"filter": flt, "dry_run": True}, headers=ops)
    )
    unpinned = ok(
        await client.post(
            "/v1/replays", json={"filter": {"state": ["exception"]}, "dry_run": True}, headers=ops
        )
    )
    created = ok(
        await client.post(
            "/v1/replays",
            json={"filter": flt, "expected_count": 1, "reason": "ERP outage over"},
            headers=ops,
        ),
        202,
    )

    assert isinstance(preview, dict)
    assert isinstance(unpinned, dict)
    assert isinstance(created, dict)
    assert (preview["count"], unpinned["count"]) == (1, 2)
    assert [t["correlation_id"] for t in preview["sample"]] == [before]
    async with sessionmaker() as session:
        items = await bulk.items(session, created["id"])
    assert [i.correlation_id for i in items] == [before]
    assert preview["filter"]["updated_until"] == pinned.isoformat().replace("+00:00", "Z")


async def test_a_dry_run_pins_its_own_moment_for_the_start_to_send_back(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    [before] = await _failed(sessionmaker, 1)
    ops = auth(api_keys[Role.OPS])
    asked = utc_now()
    preview = ok(
        await client.post(
            "/v1/replays", json={"filter": {"state": ["exception"]}, "dry_run": True}, headers=ops
        )
    )
    answered = utc_now()
    await asyncio.sleep(0.01)
    # Fails while ops reads the preview: a client that sends back the answer's filter leaves it out.
    async with sessionmaker.begin() as session:
        later = await add_transaction(session, state=TxState.EXCEPTION)
        await add_run(session, later, succeeded=False)

    assert isinstance(preview, dict)
    created = ok(
        await client.post(
            "/v1/replays",
            json={"filter": preview["filter"], "expected_count": preview["count"], "reason": "x"},
            headers=ops,
        ),
        202,
    )

    assert isinstance(created, dict)
    pinned = datetime.fromisoformat(preview["filter"]["updated_until"])
    assert asked <= pinned <= answered
    assert preview["filter"]["state"] == ["exception"]
    assert preview["count"] == 1
    assert created["filter"]["updated_until"] is not None
    async with sessionmaker() as session:
        items = await bulk.items(session, created["id"])
    assert [i.correlation_id for i in items] == [before]
