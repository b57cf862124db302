"""The SLA routes share a reading per set of parameters for CONCORD_SLA_MAX_AGE_S, say how old
it is, and read afresh for Cache-Control: no-cache."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.main import create_app
from api.settings import ApiSettings
from lineage.clock import utc_now
from lineage.enums import Role, TxState
from tests.api.builders import add_transaction
from tests.api.helpers import auth, statements_of_the_api
from tests.support.servers import serve_in_thread

Api = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
SUMMARY = "/v1/sla/summary"
SERIES = "/v1/sla/timeseries"


def api_with(settings: ApiSettings, key: str) -> Api:
    @asynccontextmanager
    async def serve(max_age_s: float, keep_warm_s: float = 0.0) -> AsyncIterator[httpx.AsyncClient]:
        update = {"sla_max_age_s": max_age_s, "sla_keep_warm_s": keep_warm_s}
        app = create_app(settings.model_copy(update=update))
        with serve_in_thread(app) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30, headers=auth(key)) as client:
                yield client

    return serve


async def _post_one(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker.begin() as session:
        await add_transaction(
            session,
            state=TxState.POSTED,
            received_at=utc_now() - timedelta(minutes=5),
            completed_after_s=20,
        )


def _total(body: dict[str, object]) -> int:
    groups = body["groups"]
    assert isinstance(groups, list)
    return sum(int(g["total"]) for g in groups)


async def test_a_reading_is_shared_within_the_max_age_and_no_cache_reads_again(
    api_settings: ApiSettings,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with api_with(api_settings, api_keys[Role.EXECUTIVE])(60) as client:
        first = await client.get(SUMMARY)
        await _post_one(sessionmaker)
        await asyncio.sleep(1.1)
        shared = await client.get(SUMMARY)
        # Another key (a viewer) gets the same reading: the figures do not depend on the caller.
        viewer = await client.get(SUMMARY, headers=auth(api_keys[Role.VIEWER]))
        other_window = await client.get(SUMMARY, params={"window": "2h"})
        fresh = await client.get(SUMMARY, headers={"Cache-Control": "no-cache"})

    assert [r.status_code for r in (first, shared, viewer, other_window, fresh)] == [200] * 5
    assert _total(first.json()) == 0
    assert shared.json() == viewer.json() == first.json()
    assert int(first.headers["Age"]) == 0
    assert int(shared.headers["Age"]) >= 1
    # Other parameters, another reading; no-cache, a reading made after the request.
    assert _total(other_window.json()) == 1
    assert _total(fresh.json()) == 1
    assert fresh.json()["until"] > first.json()["until"]
    assert int(fresh.headers["Age"]) == 0


async def test_a_max_age_of_zero_reads_on_every_request(
    api_settings: ApiSettings,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with api_with(api_settings, api_keys[Role.EXECUTIVE])(0) as client:
        first = (await client.get(SERIES, params={"window": "1h", "bucket": "15m"})).json()
        await _post_one(sessionmaker)
        again = (await client.get(SERIES, params={"window": "1h", "bucket": "15m"})).json()

    def total(body: dict[str, list[dict[str, dict[str, int]]]]) -> int:
        return sum(b["figures"]["total"] for b in body["buckets"])

    assert (total(first), total(again)) == (0, 1)


async def test_requests_at_once_wait_for_one_reading(
    api_settings: ApiSettings,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _post_one(sessionmaker)
    serve = api_with(api_settings, api_keys[Role.EXECUTIVE])
    async with serve(0) as client:
        await client.get("/v1/me")  # the key's own lookup, out of the count below
        with statements_of_the_api(sessionmaker) as one:
            assert (await client.get(SUMMARY)).status_code == 200

    async with serve(60) as client:
        await client.get("/v1/me")
        with statements_of_the_api(sessionmaker) as sent:
            answers = await asyncio.gather(*(client.get(SUMMARY) for _ in range(6)))

    assert [a.status_code for a in answers] == [200] * 6
    assert len({a.json()["until"] for a in answers}) == 1
    reading = [s for s in one if "business_transaction" in s]
    assert reading
    assert [s for s in sent if "business_transaction" in s] == reading


@pytest.mark.parametrize("keep_warm_s", [0.0, 60.0])
async def test_kept_warm_a_reading_is_renewed_in_the_background_before_it_expires(
    api_settings: ApiSettings,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    keep_warm_s: float,
) -> None:
    async with api_with(api_settings, api_keys[Role.EXECUTIVE])(1.0, keep_warm_s) as client:
        first = await client.get(SUMMARY)
        await _post_one(sessionmaker)
        await asyncio.sleep(1.5)  # past the max age
        sent = utc_now()
        later = await client.get(SUMMARY)

    assert (first.status_code, later.status_code) == (200, 200)
    assert (_total(first.json()), _total(later.json())) == (0, 1)
    assert int(later.headers["Age"]) == 0
    # Kept warm, the reading this request got began before it was sent: the keeper's.
    # Otherwise the request waited for a reading of its own.
    read_before = datetime.fromisoformat(later.json()["until"]) < sent
    assert read_before == (keep_warm_s > 0)
