"""Billing writes against the billing sandbox over real HTTP: created once, found after doubt."""

import httpx
import pytest

from lineage.enums import System
from orchestrator.connectors.errors import Conflict, Retryable
from orchestrator.connectors.ports import CustomerRecord, TargetRecord
from orchestrator.connectors.stripe_billing import StripeBilling, form
from sandbox.stripe_form import encode
from tests.orchestrator.connectors.conftest import LOOPBACK, ctx, ledger, set_faults

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def seed_plan(url: str, lookup_key: str = "pro_monthly") -> str:
    """A product with a monthly price under `lookup_key`; returns the price ID."""
    with httpx.Client(base_url=url, headers=FORM) as client:
        client.post("/v1/products", content=encode({"id": f"prod_{lookup_key}", "name": "Pro"}))
        price = client.post(
            "/v1/prices",
            content=encode(
                {
                    "product": f"prod_{lookup_key}",
                    "unit_amount": 9900,
                    "currency": "usd",
                    "lookup_key": lookup_key,
                    "recurring": {"interval": "month"},
                }
            ),
        ).json()
    return str(price["id"])


@pytest.fixture
async def billing(sandbox: str) -> StripeBilling:
    return StripeBilling(f"{sandbox}/billing", api_key="sk_test_x", allow=LOOPBACK)


def test_form_encodes_nested_params_as_stripe_does() -> None:
    params = {"items": [{"price": "p", "quantity": 2}], "metadata": {"a": "b"}, "x": None}

    assert form(params) == [
        ("items[0][price]", "p"),
        ("items[0][quantity]", "2"),
        ("metadata[a]", "b"),
    ]


async def test_creates_a_subscription_once_and_finds_it_by_external_id(
    sandbox: str, billing: StripeBilling
) -> None:
    price = seed_plan(f"{sandbox}/billing")
    try:
        customer = await billing.create_customer(
            CustomerRecord(external_id="crm-company-7", name="Acme"), ctx=ctx("customer")
        )
        found_price = await billing.find_price("pro_monthly", ctx=ctx())
        assert found_price == price

        async def create() -> TargetRecord:
            return await billing.create_subscription(
                external_id="crm-deal-7",
                customer_id=customer.record_id,
                items=[(price, 3)],
                metadata={"tax_code": "US-SAAS-EXEMPT"},
                days_until_due=30,
                ctx=ctx("subscription"),
            )

        created = await create()
        # The same idempotency key replays billing's first answer instead of creating again.
        replayed = await create()
        found = await billing.find_subscription("crm-deal-7", ctx=ctx())
        missing = await billing.find_subscription("crm-deal-8", ctx=ctx())
        no_price = await billing.find_price("no_such_plan", ctx=ctx())
    finally:
        await billing.aclose()

    assert (created.system, created.object_type) == (System.BILLING, "subscription")
    assert replayed.record_id == created.record_id
    assert found is not None
    assert found.record_id == created.record_id
    assert (missing, no_price) == (None, None)
    sub = httpx.get(f"{sandbox}/billing/v1/subscriptions/{created.record_id}").json()
    assert sub["metadata"] == {"tax_code": "US-SAAS-EXEMPT", "external_id": "crm-deal-7"}
    assert [(i["price"]["id"], i["quantity"]) for i in sub["items"]["data"]] == [(price, 3)]
    [record] = [r for r in ledger(f"{sandbox}/billing") if r["type"] == "subscription"]
    assert record["create_calls"] == 2


async def test_a_lost_answer_is_settled_by_search_not_by_a_second_subscription(
    sandbox: str, billing: StripeBilling
) -> None:
    price = seed_plan(f"{sandbox}/billing")
    set_faults(sandbox, "billing.subscriptions:drop_after_commit=1")
    try:
        customer = await billing.create_customer(
            CustomerRecord(external_id="crm-company-9", name="Initech"), ctx=ctx("customer")
        )
        with pytest.raises(Retryable):
            await billing.create_subscription(
                external_id="crm-deal-9",
                customer_id=customer.record_id,
                items=[(price, 1)],
                metadata={},
                days_until_due=None,
                ctx=ctx("subscription"),
            )
        found = await billing.find_subscription("crm-deal-9", ctx=ctx())
    finally:
        await billing.aclose()

    assert found is not None
    listed = httpx.get(f"{sandbox}/billing/v1/subscriptions").json()["data"]
    assert [s["id"] for s in listed] == [found.record_id]


async def test_a_second_customer_with_one_external_id_is_a_conflict(
    billing: StripeBilling,
) -> None:
    try:
        await billing.create_customer(
            CustomerRecord(external_id="crm-company-1", name="A"), ctx=ctx("first")
        )
        with pytest.raises(Conflict):
            await billing.create_customer(
                CustomerRecord(external_id="crm-company-1", name="A"), ctx=ctx("second")
            )
    finally:
        await billing.aclose()


async def test_metadata_update_merges_keys_and_is_not_an_amendment(
    sandbox: str, billing: StripeBilling
) -> None:
    price = seed_plan(f"{sandbox}/billing")
    try:
        customer = await billing.create_customer(
            CustomerRecord(external_id="crm-company-2", name="B"), ctx=ctx("customer")
        )
        sub = await billing.create_subscription(
            external_id="crm-deal-2",
            customer_id=customer.record_id,
            items=[(price, 1)],
            metadata={"tax_code": "X"},
            days_until_due=None,
            ctx=ctx("subscription"),
        )
        flagged = await billing.update_subscription_metadata(
            sub.record_id, {"renewal_risk": "high"}, ctx=ctx("flag")
        )
    finally:
        await billing.aclose()

    assert flagged.record_id == sub.record_id
    body = httpx.get(f"{sandbox}/billing/v1/subscriptions/{sub.record_id}").json()
    assert body["metadata"] == {
        "tax_code": "X",
        "external_id": "crm-deal-2",
        "renewal_risk": "high",
    }
    events = httpx.get(
        f"{sandbox}/billing/v1/events", params={"type": "customer.subscription.updated"}
    ).json()["data"]
    [update] = events
    # Only metadata changed, so Concord's intake does not read it as a plan change.
    assert set(update["data"]["previous_attributes"]) == {"metadata"}
