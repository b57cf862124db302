"""GET /v1/search finds a transaction by any ID; GET /v1/lineage draws its graph."""

import csv
import io
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.clock import utc_now
from lineage.enums import Role, TxState
from tests.api.builders import add_run, add_transaction
from tests.api.helpers import auth, ok


@pytest.fixture
async def posted(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    async with sessionmaker.begin() as session:
        tx = await add_transaction(
            session,
            state=TxState.POSTED,
            invoice_id="in_search_1",
            subscription_id="sub_search_1",
            customer_id="cus_search_1",
            event_id="evt_search_1",
            completed_after_s=3,
        )
        await add_run(session, tx, succeeded=True, erp_id="INV-ERP-0042")
        # A decoy with other IDs must never match.
        await add_transaction(session, state=TxState.POSTED, subscription_id="sub_other")
    return {"correlation_id": tx.correlation_id}


async def test_search_finds_the_transaction_by_each_kind_of_id(
    client: httpx.AsyncClient, api_keys: dict[Role, str], posted: dict[str, str]
) -> None:
    cases = [
        ("in_search_1", {"invoice_id", "external_ref:billing:invoice"}),
        ("sub_search_1", {"subscription_id"}),
        ("cus_search_1", {"customer_id"}),
        ("evt_search_1", {"event_id"}),
        ("INV-ERP-0042", {"external_ref:erp:invoice"}),
        (posted["correlation_id"], {"correlation_id"}),
    ]
    for query, matched_by in cases:
        body = ok(
            await client.get("/v1/search", params={"q": query}, headers=auth(api_keys[Role.VIEWER]))
        )

        assert isinstance(body, dict)
        [hit] = body["items"]
        assert hit["transaction"]["correlation_id"] == posted["correlation_id"], query
        assert set(hit["matched_by"]) == matched_by, query


@pytest.mark.usefixtures("posted")
async def test_search_for_an_unknown_id_finds_nothing(
    client: httpx.AsyncClient, api_keys: dict[Role, str]
) -> None:
    body = ok(
        await client.get("/v1/search", params={"q": "in_nope"}, headers=auth(api_keys[Role.VIEWER]))
    )

    assert body == {"query": "in_nope", "items": []}


async def test_lineage_graph_spans_source_event_runs_steps_and_target_records(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    now = utc_now()
    async with sessionmaker.begin() as session:
        later = await add_transaction(
            session, state=TxState.RECEIVED, subscription_id="sub_g", occurred_at=now
        )
        tx = await add_transaction(
            session,
            state=TxState.POSTED,
            subscription_id="sub_g",
            invoice_id="in_g",
            event_id="evt_g",
            occurred_at=now - timedelta(days=30),
        )
        await add_run(session, tx, succeeded=False)
        await add_run(session, tx, succeeded=True, erp_id="INV-G")
        earlier = await add_transaction(
            session,
            state=TxState.POSTED,
            subscription_id="sub_g",
            occurred_at=now - timedelta(days=60),
        )
        await add_transaction(session, state=TxState.POSTED, subscription_id="sub_unrelated")

    body = ok(
        await client.get(f"/v1/lineage/{tx.correlation_id}", headers=auth(api_keys[Role.VIEWER]))
    )

    assert isinstance(body, dict)
    nodes = {n["id"]: n for n in body["nodes"]}
    kinds = sorted(n["kind"] for n in body["nodes"])
    assert kinds == ["event", "record", "record", "run", "run", "step", "step", "transaction"]
    erp = nodes["record:erp:invoice:INV-G"]
    assert (erp["system"], erp["label"]) == ("erp", "INV-G")
    assert nodes["record:billing:invoice:in_g"]["system"] == "billing"
    edges = {(e["source"], e["kind"], e["target"]) for e in body["edges"]}
    event_id = next(i for i, n in nodes.items() if n["kind"] == "event")
    steps = sorted((i for i, n in nodes.items() if n["kind"] == "step"), key=lambda i: int(i[5:]))
    assert edges == {
        ("record:billing:invoice:in_g", "emitted", event_id),
        (event_id, "started", f"transaction:{tx.correlation_id}"),
        (f"transaction:{tx.correlation_id}", "ran", "run:1"),
        (f"transaction:{tx.correlation_id}", "ran", "run:2"),
        ("run:1", "executed", steps[0]),
        ("run:2", "executed", steps[1]),
        (steps[1], "created", "record:erp:invoice:INV-G"),
    }
    assert all(e["at"] is not None for e in body["edges"])
    assert [t["correlation_id"] for t in body["related"]] == [
        earlier.correlation_id,
        later.correlation_id,
    ]


async def test_lineage_of_an_unknown_transaction_is_404(
    client: httpx.AsyncClient, api_keys: dict[Role, str]
) -> None:
    response = await client.get("/v1/lineage/nope", headers=auth(api_keys[Role.VIEWER]))

    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")


async def test_transactions_export_as_csv_with_the_list_filters(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        eur = [
            await add_transaction(session, state=TxState.EXCEPTION, currency="EUR", amount_minor=a)
            for a in (500, 1500, 2500)
        ]
        await add_transaction(session, state=TxState.EXCEPTION, currency="USD", amount_minor=1500)

    response = await client.get(
        "/v1/transactions",
        params={"format": "csv", "currency": "eur", "min_amount_minor": 1000},
        headers=auth(api_keys[Role.FINANCE]),
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["correlation_id"] for r in rows] == [eur[2].correlation_id, eur[1].correlation_id]
    assert [(r["amount_minor"], r["currency"], r["state"]) for r in rows] == [
        ("2500", "EUR", "exception"),
        ("1500", "EUR", "exception"),
    ]
