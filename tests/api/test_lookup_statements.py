"""GET /v1/transactions/{id} and /v1/search: a fixed, small number of SQL statements each.

Every query behind a lookup is an index scan well under a millisecond at 20 M attempt rows; the
round trips are the cost (docs/performance.md, Lookup). These tests count the statements the
API's engine sends, so a per-level or per-row query creeping back in fails here.
"""

import re

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.clock import utc_now
from lineage.enums import AttemptOutcome, Role, RunState, StepState, System, TxState
from lineage.models import BusinessTransaction, StepAttempt, WorkflowRun, WorkflowStep
from tests.api.builders import add_run, add_transaction
from tests.api.helpers import auth, ok, statements_of_the_api

# One for the API key, then the lineage: the transaction with its event, the runs with their
# steps and attempts, the external references, the exceptions.
DETAIL_STATEMENTS = 5
# One for the API key, one for every kind of match, one for the matching transactions.
SEARCH_STATEMENTS = 3


def _tables(statements: list[str]) -> list[str]:
    """The first table each statement reads."""
    tables = []
    for statement in statements:
        match = re.search(r"\bFROM\s+(\w+)", statement)
        assert match is not None, statement
        tables.append(match.group(1))
    return tables


async def _add_step(
    session: AsyncSession, run: WorkflowRun, name: str, outcomes: list[AttemptOutcome]
) -> None:
    now = utc_now()
    step = WorkflowStep(
        run_id=run.id,
        correlation_id=run.correlation_id,
        name=name,
        target_system=System.ERP,
        state=StepState.SUCCEEDED if outcomes else StepState.PENDING,
        idempotency_key=f"{run.correlation_id}:{run.number}:{name}",
        attempt_count=len(outcomes),
        output={"step": name} if outcomes else None,
    )
    session.add(step)
    await session.flush()
    # Added newest first: the answer must order them by number, not by insertion.
    for number, outcome in reversed(list(enumerate(outcomes, start=1))):
        session.add(
            StepAttempt(
                step_id=step.id,
                correlation_id=run.correlation_id,
                number=number,
                started_at=now,
                ended_at=now,
                outcome=outcome,
            )
        )
    await session.flush()


async def _long_history(session: AsyncSession) -> BusinessTransaction:
    """Three runs: two failed (exceptions), one with two steps (one never attempted), one empty."""
    tx = await add_transaction(session, state=TxState.POSTED)
    await add_run(session, tx, succeeded=False)
    await add_run(session, tx, succeeded=False)
    run = await add_run(session, tx, succeeded=True, erp_id="INV-LONG")
    await _add_step(
        session,
        run,
        "crm.update_deal",
        [AttemptOutcome.FAILED, AttemptOutcome.FAILED, AttemptOutcome.SUCCEEDED],
    )
    await _add_step(session, run, "notify.finance", [])
    tx.run_count += 1
    session.add(
        WorkflowRun(
            correlation_id=tx.correlation_id,
            number=tx.run_count,
            trigger="replay",
            state=RunState.RUNNING,
        )
    )
    await session.flush()
    return tx


async def test_detail_sends_the_same_few_statements_however_long_the_history(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        short = await add_transaction(session, state=TxState.POSTED)
        await add_run(session, short, succeeded=True, erp_id="INV-SHORT")
        long = await _long_history(session)
    headers = auth(api_keys[Role.ADMIN])
    # The key's first use records last_used_at, an UPDATE the next minute's requests skip.
    ok(await client.get("/v1/me", headers=headers))

    counted: dict[str, list[str]] = {}
    for tx in (short, long):
        with statements_of_the_api(sessionmaker) as sent:
            ok(await client.get(f"/v1/transactions/{tx.correlation_id}", headers=headers))
        counted[tx.correlation_id] = sent

    for sent in counted.values():
        assert len(sent) == DETAIL_STATEMENTS, sent
        assert _tables(sent) == [
            "api_key",
            "business_transaction",
            "workflow_run",
            "external_ref",
            "exception_item",
        ]


async def test_detail_of_a_long_history_keeps_every_level_in_order(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        tx = await _long_history(session)

    body = ok(
        await client.get(f"/v1/transactions/{tx.correlation_id}", headers=auth(api_keys[Role.OPS]))
    )

    assert isinstance(body, dict)
    shape = [
        (
            run["number"],
            [(s["name"], [a["number"] for a in s["attempts"]], s["output"]) for s in run["steps"]],
        )
        for run in body["runs"]
    ]
    assert shape == [
        (1, [("erp.post_invoice", [1], None)]),
        (2, [("erp.post_invoice", [1], None)]),
        (
            3,
            [
                ("erp.post_invoice", [1], None),
                ("crm.update_deal", [1, 2, 3], {"step": "crm.update_deal"}),
                ("notify.finance", [], None),
            ],
        ),
        (4, []),
    ]
    outcomes = [a["outcome"] for a in body["runs"][2]["steps"][1]["attempts"]]
    assert outcomes == ["failed", "failed", "succeeded"]
    assert body["event"]["source_event_id"] == f"evt_{tx.correlation_id[-12:]}"
    assert [(r["system"], r["external_id"]) for r in body["external_refs"]] == [
        ("billing", tx.invoice_id),
        ("erp", "INV-LONG"),
    ]
    assert [e["classification"] for e in body["exceptions"]] == ["retry_budget_exhausted"] * 2
    assert body["canonical"]["latest_run"] == 4


async def test_detail_of_an_unknown_transaction_is_404_after_one_lineage_statement(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    headers = auth(api_keys[Role.VIEWER])
    ok(await client.get("/v1/me", headers=headers))

    with statements_of_the_api(sessionmaker) as sent:
        response = await client.get("/v1/transactions/nope", headers=headers)

    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")
    assert _tables(sent) == ["api_key", "business_transaction"]


async def test_search_sends_the_same_few_statements_for_any_kind_of_id(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        tx = await add_transaction(session, state=TxState.POSTED, invoice_id="in_count_1")
        await add_run(session, tx, succeeded=True, erp_id="INV-COUNT-1")
    headers = auth(api_keys[Role.VIEWER])
    ok(await client.get("/v1/me", headers=headers))

    for query in ("in_count_1", "INV-COUNT-1", tx.correlation_id, "cus_built"):
        with statements_of_the_api(sessionmaker) as sent:
            body = ok(await client.get("/v1/search", params={"q": query}, headers=headers))
        assert isinstance(body, dict)
        assert [h["transaction"]["correlation_id"] for h in body["items"]] == [tx.correlation_id]
        assert len(sent) == SEARCH_STATEMENTS, (query, sent)
    with statements_of_the_api(sessionmaker) as sent:
        body = ok(await client.get("/v1/search", params={"q": "in_nope"}, headers=headers))
    assert body == {"query": "in_nope", "items": []}
    # Nothing matched, so no transaction is read.
    assert len(sent) == SEARCH_STATEMENTS - 1
