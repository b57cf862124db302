"""GET /metrics reads the database at most once per CONCORD_METRICS_MAX_AGE_S, however many
scrapes arrive, and says when it read it."""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.main import create_app
from api.settings import ApiSettings
from tests.api.helpers import statements_of_the_api
from tests.factories import new_invoice, signed_headers, stripe_event
from tests.support.servers import serve_in_thread

Api = Callable[[float], AbstractAsyncContextManager[httpx.AsyncClient]]


def _reading(exposition: str) -> tuple[float, float]:
    """(transactions counted, when the figures were read)."""
    counted, read_at = 0.0, None
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "concord_transactions":
                counted += sample.value
            elif sample.name == "concord_figures_computed_timestamp_seconds":
                read_at = sample.value
    assert read_at is not None, "no concord_figures_computed_timestamp_seconds"
    return counted, read_at


async def _deliver_one(client: httpx.AsyncClient) -> None:
    body = json.dumps(stripe_event(invoice=new_invoice())).encode()
    response = await client.post("/v1/webhooks/stripe", content=body, headers=signed_headers(body))
    assert response.status_code == 202


def api_with(settings: ApiSettings) -> Api:
    @asynccontextmanager
    async def serve(max_age_s: float) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings.model_copy(update={"metrics_max_age_s": max_age_s}))
        with serve_in_thread(app) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                yield client

    return serve


async def test_scrapes_within_the_max_age_share_one_reading(api_settings: ApiSettings) -> None:
    async with api_with(api_settings)(60) as client:
        first = _reading((await client.get("/metrics")).text)
        await _deliver_one(client)
        again = _reading((await client.get("/metrics")).text)

    assert first[0] == 0
    assert again == first


async def test_a_max_age_of_zero_reads_on_every_scrape(api_settings: ApiSettings) -> None:
    async with api_with(api_settings)(0) as client:
        first = _reading((await client.get("/metrics")).text)
        await _deliver_one(client)
        again = _reading((await client.get("/metrics")).text)

    assert (first[0], again[0]) == (0, 1)
    assert again[1] > first[1]


async def test_scrapes_at_once_wait_for_one_reading(
    api_settings: ApiSettings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    serve = api_with(api_settings)
    async with serve(0) as client:
        with statements_of_the_api(sessionmaker) as one_reading:
            assert (await client.get("/metrics")).status_code == 200

    async with serve(60) as client:
        with statements_of_the_api(sessionmaker) as sent:
            answers = await asyncio.gather(*(client.get("/metrics") for _ in range(6)))

    assert [a.status_code for a in answers] == [200] * 6
    assert len({_reading(a.text) for a in answers}) == 1
    assert len(one_reading) > 0
    assert sent == one_reading
