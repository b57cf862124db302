"""An event's first delivery: on PostgreSQL the event, its transaction and references in one
statement, and the rows exactly those record_event writes in a transaction; a redelivery
writes nothing and raises AlreadyStored."""

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import class_mapper

from lineage import inbox
from lineage.enums import System
from lineage.models import BusinessTransaction, ExternalRef, InboxEvent

SM = async_sessionmaker[AsyncSession]
# Differ between two deliveries by construction: keys, and the moment each was stored.
OWN = ("id", "correlation_id", "source_event_id", "received_at", "updated_at", "created_at")
OWN_TIMES = ("completed_at", "last_delivery_at")


def _event(event_id: str, *, workflow: str | None, customer: str | None) -> inbox.IncomingEvent:
    return inbox.IncomingEvent(
        source="stripe",
        source_event_id=event_id,
        event_type="invoice.finalized",
        source_system=System.BILLING,
        payload={"object": "event", "data": {"amount_due": 1200}},
        workflow=workflow,
        ignored_reason=None if workflow else "no workflow for a draft invoice",
        canonical={"invoice_id": "in_1", "amount_minor": 1200} if workflow else None,
        customer_id=customer,
        subscription_id=None,
        invoice_id="in_1",
        amount_minor=1200,
        currency="EUR",
        period="2026-11",
        ordering_key="invoice:in_1" if workflow else None,
        occurred_at=datetime(2026, 11, 28, 9, 30, tzinfo=UTC),
    )


def _columns(row: Any) -> dict[str, Any]:
    values = {
        a.key: getattr(row, a.key)
        for a in inspect(type(row)).column_attrs
        if a.key not in OWN + OWN_TIMES
    }
    # Set or not, never compared by value: each delivery is stored at its own moment.
    return values | {k: getattr(row, k) is None for k in OWN_TIMES if hasattr(row, k)}


async def _rows(sessionmaker: SM, correlation_id: str) -> list[dict[str, Any]]:
    async with sessionmaker() as session:
        found: list[dict[str, Any]] = []
        for model in (BusinessTransaction, InboxEvent, ExternalRef):
            rows = await session.scalars(
                select(model)
                .where(model.correlation_id == correlation_id)
                .order_by(*class_mapper(model).primary_key)
            )
            found += [_columns(row) | {"table": model.__tablename__} for row in rows]
        return found


@pytest.mark.parametrize(
    ("workflow", "customer"),
    [("invoice_generated", "cus_1"), (None, None)],
    ids=["started", "ignored"],
)
async def test_a_first_delivery_writes_the_rows_a_transaction_would(
    sessionmaker: SM, workflow: str | None, customer: str | None
) -> None:
    written = await inbox.record_first_delivery(
        sessionmaker, _event("evt_one", workflow=workflow, customer=customer)
    )
    async with sessionmaker.begin() as session:
        reference = await inbox.record_event(
            session, _event("evt_two", workflow=workflow, customer=customer), look_first=False
        )

    rows = await _rows(sessionmaker, written.correlation_id)
    assert rows == await _rows(sessionmaker, reference.correlation_id)
    assert (written.status, written.duplicate) == (reference.status, False)
    tables = [row["table"] for row in rows]
    expected_refs = [("invoice", "in_1")] + ([("customer", "cus_1")] if customer else [])
    assert tables == ["business_transaction", "inbox_event"] + ["external_ref"] * len(expected_refs)
    assert [
        (row["object_type"], row["external_id"]) for row in rows if row["table"] == "external_ref"
    ] == expected_refs


async def test_a_redelivery_writes_nothing(sessionmaker: SM) -> None:
    first = _event("evt_again", workflow="invoice_generated", customer="cus_1")
    await inbox.record_first_delivery(sessionmaker, first)

    with pytest.raises(inbox.AlreadyStored):
        await inbox.record_first_delivery(sessionmaker, first)

    async with sessionmaker() as session:
        counts = [
            await session.scalar(select(func.count()).select_from(model))
            for model in (BusinessTransaction, InboxEvent, ExternalRef)
        ]
    assert counts == [1, 1, 2]
