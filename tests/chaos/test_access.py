"""Access against the running system, holding real transactions: every route under every role,
revoked keys, other keys' objects, unknown fields, and the replay rate limit answer 401, 403,
404, 422 or 429 as designed, and the audit log holds exactly one row per request that must be
audited (every mutating call, every denial) and none for the rest."""

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.enums import Role
from tests.api.helpers import audit_rows, auth
from tests.api.test_role_matrix import (
    EXPECTED,
    IDENTITIES,
    NOT_AUDITED_ON_SUCCESS,
    PUBLIC,
    _request,
    _routes,
)
from tests.chaos.harness import running_system, wait_posted
from tests.chaos.history import History

POSTED = 10


class Ledger:
    """The requests made, and how many audit rows each must have written."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.expected_rows = 0
        self.answers: list[tuple[str, int]] = []

    async def call(
        self, method: str, path: str, key: str | None, *, audited: bool, **kwargs: object
    ) -> httpx.Response:
        headers = auth(key) if key else {}
        response = await self.client.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]
        self.expected_rows += 1 if audited else 0
        self.answers.append((f"{method} {path}", response.status_code))
        return response


async def test_access_is_enforced_and_audited_one_row_per_request(
    database_url: str,
    redis_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    api_keys: dict[Role, str],
) -> None:
    history = History()
    with running_system(database_url, redis_url) as system:
        system.start_worker()
        await history.send_invoices(system, POSTED)
        assert await wait_posted(sessionmaker, POSTED, timeout_s=60) == POSTED
        async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as client:
            ledger = Ledger(client)
            listed = await ledger.call(
                "GET", "/v1/transactions", api_keys[Role.VIEWER], audited=False
            )
            real = str(listed.json()["items"][0]["correlation_id"])
            wrong: list[str] = []

            # 1. Every route under every identity, on real objects where the path names one.
            for op in _routes():
                if (op.method, op.path) in PUBLIC:
                    continue
                allowed = EXPECTED[(op.method, op.path)]
                path, kwargs = _request(op)
                path = path.replace("01000000-0000-7000-8000-0", real)
                for identity in IDENTITIES:
                    denied = identity is None or identity not in allowed
                    mutating = (
                        op.method != "GET" and (op.method, op.path) not in NOT_AUDITED_ON_SUCCESS
                    )
                    key = api_keys[identity] if identity else None
                    response = await ledger.call(
                        op.method, path, key, audited=denied or mutating, **kwargs
                    )
                    want = 401 if identity is None else 403 if denied else None
                    status = response.status_code
                    if (
                        status >= 500
                        or (want and status != want)
                        or (not want and status in (401, 403))
                    ):
                        wrong.append(f"{op.method} {path} as {identity}: {status}")
                    # An intake refusal of an admitted caller is audited too (a failed mutation).
                    if (
                        (op.method, op.path) in NOT_AUDITED_ON_SUCCESS
                        and not denied
                        and status >= 400
                    ):
                        ledger.expected_rows += 1

            # 2. A revoked key is no key at all; another key is not the caller's to revoke.
            created = await ledger.call(
                "POST",
                "/v1/keys",
                api_keys[Role.ADMIN],
                audited=True,
                json={"name": "temp", "role": "ops"},
            )
            temp_id, temp_key = created.json()["id"], created.json()["key"]
            as_ops = await ledger.call(
                "POST", f"/v1/keys/{temp_id}/revoke", api_keys[Role.OPS], audited=True
            )
            revoked = await ledger.call(
                "POST", f"/v1/keys/{temp_id}/revoke", api_keys[Role.ADMIN], audited=True
            )
            after_revoke = await ledger.call("GET", "/v1/transactions", temp_key, audited=True)

            # 3. Objects that do not exist, and unknown fields on inputs.
            missing = await ledger.call(
                "GET",
                "/v1/transactions/01900000-0000-7000-8000-000000000000",
                api_keys[Role.VIEWER],
                audited=False,
            )
            replay_missing = await ledger.call(
                "POST",
                "/v1/transactions/01900000-0000-7000-8000-000000000000/replay",
                api_keys[Role.OPS],
                audited=True,
                json={"reason": "chaos"},
            )
            unknown_field = await ledger.call(
                "POST",
                f"/v1/transactions/{real}/replay",
                api_keys[Role.OPS],
                audited=True,
                json={"reason": "chaos", "priority": "high"},
            )
            unknown_filter = await ledger.call(
                "POST",
                "/v1/replays",
                api_keys[Role.OPS],
                audited=True,
                json={"filter": {"state": ["exception"], "colour": "red"}, "dry_run": True},
            )

            # 4. The replay rate limit: a burst beyond it is refused with Retry-After.
            burst = [
                await ledger.call(
                    "POST",
                    f"/v1/transactions/{real}/replay",
                    api_keys[Role.ADMIN],
                    audited=True,
                    json={"reason": f"burst {n}"},
                )
                for n in range(40)
            ]
        rows = await audit_rows(sessionmaker)

    assert wrong == []
    assert (created.status_code, as_ops.status_code, revoked.status_code) == (201, 403, 200)
    assert after_revoke.status_code == 401
    assert (missing.status_code, replay_missing.status_code) == (404, 404)
    assert (unknown_field.status_code, unknown_filter.status_code) == (422, 422)
    limited = [r for r in burst if r.status_code == 429]
    assert limited, [r.status_code for r in burst]
    assert all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    assert {r.status_code for r in burst} <= {200, 202, 409, 429}
    assert [s for _c, s in ledger.answers if s >= 500] == []
    # Exactly one audit row per request that must be audited, and none for the rest.
    assert len(rows) == ledger.expected_rows
    assert {r.outcome for r in rows} <= {"succeeded", "rejected", "denied"}
