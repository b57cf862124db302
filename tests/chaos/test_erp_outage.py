"""An ERP down for longer than the retry budget: every affected transaction lands in the
exception queue, nothing reaches the ERP, and after the outage one bulk replay through the API
(dry run first, then the real one) posts each of them exactly once."""

import asyncio
import time

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.enums import Role
from tests.chaos.harness import EVENTS, System, running_system, wait_posted
from tests.chaos.history import SETTLE_S, History, left_running

# A short budget: three attempts, a few seconds apart, against an ERP that stays down.
BUDGET = {"CONCORD_MAX_ATTEMPTS": "3", "CONCORD_RETRY_BASE_S": "0.2", "CONCORD_RETRY_CAP_S": "0.5"}
# The bulk replay refuses sets beyond bulk_replay_max (500 by default).
AFFECTED = min(400, max(60, EVENTS // 3))
BEFORE = 20


async def _open_exceptions(client: httpx.AsyncClient, key: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        response = await client.get(
            "/v1/exceptions", params=params, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def _wait_exceptions(
    client: httpx.AsyncClient, key: str, count: int, *, timeout_s: float = SETTLE_S
) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    while True:
        items = await _open_exceptions(client, key)
        if len(items) >= count or time.monotonic() > deadline:
            return items
        await asyncio.sleep(0.5)


def _set_faults(system: System, spec: str) -> None:
    response = httpx.post(f"{system.erp_url}/_admin/faults", json={"faults": spec})
    assert response.status_code == 200, response.text


async def test_erp_outage_beyond_the_budget_queues_every_transaction_and_a_bulk_replay_posts_each_once(
    database_url: str,
    redis_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    api_keys: dict[Role, str],
) -> None:
    history = History()
    with running_system(database_url, redis_url) as system:
        system.start_worker(**BUDGET)
        system.start_worker(**BUDGET)
        await history.send_invoices(system, BEFORE)
        assert await wait_posted(sessionmaker, BEFORE, timeout_s=60) == BEFORE

        # Down for good, yet each 503 promises (Retry-After) to be back within 2 s: the worker
        # waits as told, and the budget still ends it. A plain `erp:outage=1h` answers
        # Retry-After: 3600, which parks the transactions in `retrying` for the hour instead.
        _set_faults(system, "erp:outage=2s/2s")
        affected = await history.send_invoices(system, AFFECTED)
        async with httpx.AsyncClient(base_url=system.api_url, timeout=60) as client:
            queued = await _wait_exceptions(client, api_keys[Role.VIEWER], AFFECTED)

            effects = await history.effects(system, sessionmaker)
            affected_ids = {effects.transactions[s.event_id][0][0] for s in affected}
            assert {str(i["correlation_id"]) for i in queued} == affected_ids
            assert {i["classification"] for i in queued} == {"retry_budget_exhausted"}
            assert {i["transaction_state"] for i in queued} == {"exception"}
            # Nothing the outage touched reached the ERP.
            assert not set(effects.erp) & {s.invoice_id for s in affected}

            _set_faults(system, "")
            ops = {"Authorization": f"Bearer {api_keys[Role.OPS]}"}
            body = {"filter": {"state": ["exception"]}, "reason": "the ERP outage ended"}
            preview = await client.post("/v1/replays", json={**body, "dry_run": True}, headers=ops)
            assert preview.status_code == 200, preview.text
            assert (preview.json()["count"], preview.json()["already_held"]) == (AFFECTED, 0)
            started = await client.post(
                "/v1/replays", json={**body, "expected_count": AFFECTED}, headers=ops
            )
            assert started.status_code == 202, started.text

            posted = await wait_posted(sessionmaker, BEFORE + AFFECTED, timeout_s=SETTLE_S)
            job = (await client.get(f"/v1/replays/{started.json()['id']}", headers=ops)).json()
            left_open = await _open_exceptions(client, api_keys[Role.VIEWER])

        verdict = await history.verdict(system, sessionmaker)
        assert posted == BEFORE + AFFECTED, verdict.summary()
        verdict.assert_ok()
        assert job["progress"] == {"replayed": AFFECTED}
        assert left_open == []
        assert await left_running(sessionmaker) == 0
