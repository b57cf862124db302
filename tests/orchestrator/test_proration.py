"""The ERP impact of an amendment: prorated per price to the second, booked per revenue account."""

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import cast

import pytest

from orchestrator import amendment
from orchestrator.client.canonical import Subscription, SubscriptionChange, SubscriptionItem
from orchestrator.connectors.errors import Terminal
from orchestrator.connectors.ports import CallContext
from orchestrator.deps import WorkerDeps
from orchestrator.erp_keys import contract_external_id
from orchestrator.mappings import MappingMissing, load_mappings
from orchestrator.proration import (
    journal,
    legacy_proration_key,
    proration_impact,
    proration_key,
)
from tests.fakes import ScriptedErp

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)
MAPPINGS = load_mappings()


def _item(price: str, product: str, quantity: int, unit: int) -> SubscriptionItem:
    return SubscriptionItem(
        price_id=price,
        product_id=product,
        quantity=quantity,
        unit_amount_minor=unit,
        interval="month",
    )


STARTER = ("price_starter", "prod_starter_monthly", 2900)
PRO = ("price_pro", "prod_pro_monthly", 9900)


def _change(
    before: list[SubscriptionItem],
    after: list[SubscriptionItem],
    at: datetime | None,
    currency: str = "USD",
) -> SubscriptionChange:
    sub = Subscription(
        subscription_id="sub_1",
        customer_id="cus_1",
        status="active",
        currency=currency,
        items=after,
        current_period_start=START,
        current_period_end=END,
    )
    return SubscriptionChange(subscription=sub, previous_items=before, effective_at=at)


def test_an_upgrade_halfway_bills_half_the_difference_to_each_products_account() -> None:
    halfway = START + (END - START) / 2
    change = _change([_item(*STARTER[:2], 1, 2900)], [_item(*PRO[:2], 1, 9900)], halfway)

    impact = proration_impact(change, MAPPINGS)

    # Starter (4010) loses half of 29.00, Pro (4020) gains half of 99.00.
    assert impact.remaining == Decimal("0.5")
    assert impact.by_account == (("4010", -1450), ("4020", 4950))
    assert impact.total_minor == 3500
    entry = journal(impact, receivable_account="1210", subsidiary="1")
    sides = [(x.account, x.debit_minor, x.credit_minor) for x in entry.lines]
    assert sides == [("4010", 1450, 0), ("4020", 0, 4950), ("1210", 3500, 0)]
    assert sum(x.debit_minor for x in entry.lines) == sum(x.credit_minor for x in entry.lines)
    assert (entry.subsidiary, entry.external_id) == ("1", proration_key(change))
    assert entry.posted_on == halfway.date()


def test_a_downgrade_credits_the_receivable_and_its_reversal_swaps_every_side() -> None:
    third = START + (END - START) / 3
    change = _change([_item(*PRO[:2], 3, 9900)], [_item(*PRO[:2], 1, 9900)], third)

    impact = proration_impact(change, MAPPINGS)
    entry = journal(impact, receivable_account="1210", subsidiary="2")
    reversal = journal(impact, receivable_account="1210", subsidiary="2", reverse=True)

    assert impact.total_minor == -13200  # two seats of 99.00 for two thirds of the period
    assert [(x.account, x.debit_minor, x.credit_minor) for x in entry.lines] == [
        ("4020", 13200, 0),
        ("1210", 0, 13200),
    ]
    assert [(x.account, x.debit_minor, x.credit_minor) for x in reversal.lines] == [
        ("4020", 0, 13200),
        ("1210", 13200, 0),
    ]
    assert reversal.external_id == f"{entry.external_id}:reversal"


def test_rounding_is_half_even_in_minor_units() -> None:
    # One more seat of 0.01 with half the period left: 0.5 minor units rounds to 0.
    halfway = START + (END - START) / 2
    change = _change([_item(*STARTER[:2], 1, 1)], [_item(*STARTER[:2], 2, 1)], halfway)
    assert proration_impact(change, MAPPINGS).by_account == ()


@pytest.mark.parametrize(
    ("at", "remaining"),
    [(START - timedelta(days=3), Decimal(1)), (END + timedelta(days=3), Decimal(0))],
)
def test_a_change_outside_the_period_is_clamped(at: datetime, remaining: Decimal) -> None:
    change = _change([_item(*STARTER[:2], 1, 2900)], [_item(*STARTER[:2], 2, 2900)], at)
    assert proration_impact(change, MAPPINGS).remaining == remaining


def test_the_key_is_the_change_and_its_time_not_the_time_of_the_call() -> None:
    at = START + timedelta(days=5, seconds=7)
    one, two, three = (_item(*STARTER[:2], n, 2900) for n in (1, 2, 3))
    change = _change([one], [two], at)

    key = proration_key(change)

    assert key.startswith(f"proration:sub_1:{int(at.timestamp())}:")
    # The same change (a retry, a replay) has the same key ...
    assert proration_key(_change([one], [two], at)) == key
    # ... and two changes within the same second have two.
    assert (
        len(
            {
                key,
                proration_key(_change([two], [three], at)),
                proration_key(_change([two], [one], at)),
            }
        )
        == 3
    )
    # Entries posted before the key named the change are still found by their old key.
    assert legacy_proration_key(key) == f"proration:sub_1:{int(at.timestamp())}"
    assert legacy_proration_key(f"proration:sub_1:{int(at.timestamp())}") is None


def test_missing_facts_and_mappings_are_terminal_and_named() -> None:
    undated = _change([_item(*STARTER[:2], 1, 2900)], [_item(*STARTER[:2], 2, 2900)], None)
    with pytest.raises(Terminal, match="names no time"):
        proration_impact(undated, MAPPINGS)

    unknown = _change(
        [_item(*STARTER[:2], 1, 2900)], [_item("price_x", "prod_unknown", 1, 100)], START
    )
    with pytest.raises(MappingMissing, match="prod_unknown"):
        proration_impact(unknown, MAPPINGS)


async def test_an_entry_posted_under_the_old_key_is_found_not_posted_again() -> None:
    at = START + timedelta(days=5)
    change = _change([_item(*STARTER[:2], 1, 2900)], [_item(*STARTER[:2], 2, 2900)], at)
    key = proration_key(change)
    erp = ScriptedErp()
    deps = cast(WorkerDeps, SimpleNamespace(erp=erp))
    ctx = CallContext("c1", "c1:erp.post_proration")

    assert await amendment.find_proration(deps, key, ctx) is None

    erp.records[("journalentry", f"proration:sub_1:{int(at.timestamp())}")] = {"id": "7"}
    found = await amendment.find_proration(deps, key, ctx)

    assert found is not None
    assert (found.record_id, found.external_id) == ("7", f"proration:sub_1:{int(at.timestamp())}")


def test_contract_version_ids_stay_what_the_erp_already_holds() -> None:
    items = [_item(*STARTER[:2], 2, 2900), _item(*PRO[:2], 1, 9900)]
    sub = _change([], items, START).subscription
    # The digest revenue plans were posted under before items_digest existed.
    held = repr([(i.price_id, i.quantity, i.unit_amount_minor) for i in items]).encode()
    assert contract_external_id(sub) == f"contract:sub_1:{hashlib.sha256(held).hexdigest()[:10]}"
