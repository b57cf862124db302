"""Audit log reads, its append-only guarantee, API key management, strict inputs, rate limits."""

import httpx
import pytest
from sqlalchemy import delete, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.settings import ApiSettings
from lineage.enums import Role, TxState
from lineage.models import AuditLog
from tests.api.builders import add_run, add_transaction
from tests.api.helpers import audit_rows, auth, ok


async def test_key_lifecycle_is_audited_and_a_revoked_key_stops_working(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin = auth(api_keys[Role.ADMIN])

    created = ok(
        await client.post("/v1/keys", json={"name": "bob", "role": "ops"}, headers=admin), 201
    )
    assert isinstance(created, dict)
    as_bob = auth(created["key"])
    before_revoke = await client.get("/v1/exceptions", headers=as_bob)
    listed = ok(await client.get("/v1/keys", headers=admin))
    ok(await client.post(f"/v1/keys/{created['id']}/revoke", headers=admin))
    after_revoke = await client.get("/v1/exceptions", headers=as_bob)
    again = await client.post(f"/v1/keys/{created['id']}/revoke", headers=admin)

    assert created["key"].startswith("ck_")
    assert before_revoke.status_code == 200
    assert isinstance(listed, list)
    [row] = [k for k in listed if k["id"] == created["id"]]
    assert "key" not in row
    assert row["last_used_at"] is not None
    assert after_revoke.status_code == 401
    assert (again.status_code, again.json()["error"]["code"]) == (404, "not_found")
    rows = [(r.actor, r.action, r.outcome, r.target) for r in await audit_rows(sessionmaker)]
    assert rows == [
        ("test-admin", "key.create", "succeeded", f"key:{created['id']}"),
        ("test-admin", "key.revoke", "succeeded", f"key:{created['id']}"),
        ("anonymous", "GET /v1/exceptions", "denied", None),
        ("test-admin", "key.revoke", "rejected", f"/v1/keys/{created['id']}/revoke"),
    ]


async def test_audit_is_admin_only_paginated_and_filterable(
    client: httpx.AsyncClient, api_keys: dict[Role, str]
) -> None:
    for _ in range(5):
        await client.get("/v1/audit", headers=auth(api_keys[Role.OPS]))
    admin = auth(api_keys[Role.ADMIN])

    first = ok(await client.get("/v1/audit", params={"limit": 3}, headers=admin))
    assert isinstance(first, dict)
    second = ok(
        await client.get(
            "/v1/audit", params={"limit": 3, "cursor": first["next_cursor"]}, headers=admin
        )
    )
    assert isinstance(second, dict)
    denied = ok(
        await client.get(
            "/v1/audit", params={"outcome": "denied", "actor": "test-ops"}, headers=admin
        )
    )
    assert isinstance(denied, dict)

    ids = [r["id"] for r in first["items"] + second["items"]]
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == 5
    assert second["next_cursor"] is None
    assert {r["action"] for r in denied["items"]} == {"GET /v1/audit"}
    assert len(denied["items"]) == 5


async def test_the_database_refuses_to_change_or_remove_audit_rows(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await client.get("/v1/audit")  # anonymous: one denied row
    [row] = await audit_rows(sessionmaker)

    for statement in (
        update(AuditLog).where(AuditLog.id == row.id).values(outcome="allowed"),
        delete(AuditLog).where(AuditLog.id == row.id),
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with sessionmaker.begin() as session:
                await session.execute(statement)

    [still] = await audit_rows(sessionmaker)
    assert (still.id, still.outcome) == (row.id, "denied")


UNKNOWN_FIELDS = [
    ("/v1/keys", {"name": "x", "role": "ops", "admin": True}),
    ("/v1/replays", {"dry_run": True, "dryrun": True}),
    ("/v1/replays", {"dry_run": True, "filter": {"states": ["exception"]}}),
    ("/v1/transactions/x/replay", {"reason": "r", "force": True}),
    ("/v1/transactions/x/resolve", {"resolution": "r", "note": "n", "by": "me"}),
    ("/v1/exceptions/1/assign", {"owner": "me", "until": "never"}),
]


async def test_unknown_fields_are_refused(
    client: httpx.AsyncClient, api_keys: dict[Role, str]
) -> None:
    for path, body in UNKNOWN_FIELDS:
        response = await client.post(path, json=body, headers=auth(api_keys[Role.ADMIN]))

        assert response.status_code == 422, path
        error = response.json()["error"]
        assert error["code"] == "invalid_request"
        assert any(e["type"] == "extra_forbidden" for e in error["details"]["errors"]), body


async def test_nul_characters_are_refused_before_they_reach_the_database(
    client: httpx.AsyncClient, api_keys: dict[Role, str]
) -> None:
    admin = auth(api_keys[Role.ADMIN])

    body = await client.post("/v1/keys", json={"name": "a\u0000b", "role": "ops"}, headers=admin)
    query = await client.get("/v1/search", params={"q": "in_\x00"}, headers=admin)
    path = await client.get("/v1/transactions/x%00y", headers=admin)

    for response in (body, query, path):
        assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_request")
    listed = ok(await client.get("/v1/keys", headers=admin))
    assert isinstance(listed, list)
    assert all("\x00" not in k["name"] for k in listed)


class TestRateLimit:
    @pytest.fixture
    def api_settings(self, database_url: str, redis_url: str) -> ApiSettings:
        # Three changes at once, then one every 60 s: the fourth of a burst is refused.
        return ApiSettings(
            database_url=database_url,
            redis_url=redis_url,
            mutation_burst=3,
            mutation_rate_per_minute=1,
        )

    async def test_a_burst_of_replays_beyond_the_limit_gets_429(
        self,
        client: httpx.AsyncClient,
        api_keys: dict[Role, str],
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        async with sessionmaker.begin() as session:
            txs = [await add_transaction(session, state=TxState.EXCEPTION) for _ in range(4)]
            for tx in txs:
                await add_run(session, tx, succeeded=False)
        ops = auth(api_keys[Role.OPS])

        responses = [
            await client.post(
                f"/v1/transactions/{tx.correlation_id}/replay",
                json={"reason": "burst"},
                headers=ops,
            )
            for tx in txs
        ]
        other_key = await client.post(
            f"/v1/transactions/{txs[3].correlation_id}/replay",
            json={"reason": "another key has its own bucket"},
            headers=auth(api_keys[Role.ADMIN]),
        )
        reads = await client.get("/v1/exceptions", headers=ops)

        assert [r.status_code for r in responses] == [202, 202, 202, 429]
        assert responses[3].json()["error"]["code"] == "rate_limited"
        assert 1 <= int(responses[3].headers["Retry-After"]) <= 60
        assert other_key.status_code == 202
        assert reads.status_code == 200
        rows = [(r.actor, r.action, r.outcome) for r in await audit_rows(sessionmaker)]
        assert rows.count(("test-ops", "transaction.replay", "succeeded")) == 3
        limited = [r for r in await audit_rows(sessionmaker) if r.outcome == "denied"]
        assert [(r.actor, r.detail) for r in limited] == [
            ("test-ops", {"status": 429, "code": "rate_limited"})
        ]
