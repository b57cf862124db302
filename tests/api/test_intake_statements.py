"""What a Stripe delivery costs the database, and that a redelivery is routine, not an error.

The acknowledgement waits on these statements (docs/performance.md, "Intake"): a first delivery
inserts without looking for a stored row first; a redelivery finds the event's key taken
(ON CONFLICT DO NOTHING, so PostgreSQL logs no unique violation), rolls back and counts itself.
"""

import json

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.models import InboxEvent
from tests.api.helpers import database_errors_of_the_api, statements_of_the_api
from tests.dbutil import inbox_counts, statement_shape
from tests.factories import new_invoice, signed_headers, stripe_event

URL = "/v1/webhooks/stripe"
FIRST_DELIVERY = [
    "INSERT business_transaction",
    "INSERT external_ref",
    "INSERT inbox_event",
]
# PostgreSQL writes the three in one statement in autocommit (lineage/hot_path.py).
FIRST_DELIVERY_POSTGRES = ["WITH inbox_event"]


def _first_delivery(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    postgres = sessionmaker.kw["bind"].dialect.name == "postgresql"
    return FIRST_DELIVERY_POSTGRES if postgres else FIRST_DELIVERY


async def test_a_first_delivery_inserts_without_looking_for_a_stored_event(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    body = json.dumps(stripe_event(invoice=new_invoice())).encode()

    with statements_of_the_api(sessionmaker) as sent:
        response = await client.post(URL, content=body, headers=signed_headers(body))

    assert response.status_code == 202, response.text
    assert [statement_shape(s) for s in sent] == _first_delivery(sessionmaker)
    assert await inbox_counts(sessionmaker) == (1, 1)


async def test_a_redelivery_is_counted_without_a_database_error(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    body = json.dumps(stripe_event(invoice=new_invoice())).encode()
    first = await client.post(URL, content=body, headers=signed_headers(body))

    with (
        database_errors_of_the_api(sessionmaker) as raised,
        statements_of_the_api(sessionmaker) as sent,
    ):
        again = await client.post(URL, content=body, headers=signed_headers(body))

    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True
    assert again.json()["correlation_id"] == first.json()["correlation_id"]
    assert raised == []
    # The first attempt writes nothing (rolled back, or on PostgreSQL nothing of the statement
    # is written once the event's key is taken); the second finds the event and counts it.
    assert [statement_shape(s) for s in sent] == [
        *_first_delivery(sessionmaker),
        "SELECT inbox_event",
        "UPDATE inbox_event",
    ]
    assert await inbox_counts(sessionmaker) == (1, 1)
    async with sessionmaker() as session:
        event = await session.scalar(select(InboxEvent))
    assert event is not None
    assert event.deliveries == 2
