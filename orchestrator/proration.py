"""The ERP impact of a mid-period plan or quantity change: what proration bills or credits.

Billing prorates to the second, as Stripe does by default: each price's charge for the current
period changes by (new charge - old charge) x (time left / period length). The ERP gets that
as one journal entry per amendment, unbilled receivable against each product's revenue account
(from the mappings), so finance sees an amendment's effect apart from the next invoice. A
downgrade gives a negative impact: the same lines with debit and credit swapped.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from orchestrator.client.canonical import SubscriptionChange, SubscriptionItem
from orchestrator.connectors.errors import Terminal
from orchestrator.connectors.ports import JournalEntryRecord, JournalLine
from orchestrator.erp_keys import DIGEST_CHARS, items_digest
from orchestrator.mappings import Mappings


@dataclass(frozen=True, slots=True)
class ProrationImpact:
    external_id: str
    subscription_id: str
    currency: str
    effective_on: date
    # Share of the current period left when the change took effect, 0..1.
    remaining: Decimal
    # (revenue account, minor units) with more revenue positive; zero amounts left out.
    by_account: tuple[tuple[str, int], ...]
    mappings_version: int

    @property
    def total_minor(self) -> int:
        return sum(amount for _, amount in self.by_account)


def _charges(items: list[SubscriptionItem]) -> dict[str, tuple[SubscriptionItem, int]]:
    """Each price's charge for one billing period, in minor units."""
    return {item.price_id: (item, item.unit_amount_minor * item.quantity) for item in items}


def proration_key(change: SubscriptionChange) -> str:
    """The entry's external ID: the subscription, the second the change took effect, and the
    items it changed from and to, so that two changes of one subscription within one second
    (the source stamps whole seconds) are two entries rather than one found twice.

    Never the time of the call, or a retry would post a second entry under a new ID.
    """
    effective = change.effective_at
    stamp = int(effective.timestamp()) if effective is not None else "undated"
    digest = items_digest(change.previous_items or [], change.subscription.items)
    return f"proration:{change.subscription.subscription_id}:{stamp}:{digest}"


def legacy_proration_key(external_id: str) -> str | None:
    """The ID an entry of the same change had before the key named its items (until 2026-11-26):
    entries posted then are found by it."""
    head, _, digest = external_id.rpartition(":")
    return head if head.count(":") == 2 and len(digest) == DIGEST_CHARS else None


def proration_impact(change: SubscriptionChange, mappings: Mappings) -> ProrationImpact:
    sub = change.subscription
    effective = change.effective_at
    if effective is None:
        raise Terminal(
            f"subscription {sub.subscription_id}: the change names no time it took effect",
            classification="validation",
        )
    if change.previous_items is None:
        raise Terminal(
            f"subscription {sub.subscription_id}: the change names no previous items, so its "
            "proration cannot be computed",
            classification="validation",
        )
    start, end = sub.current_period_start, sub.current_period_end
    if start is None or end is None or end <= start:
        raise Terminal(
            f"subscription {sub.subscription_id} has no current period to prorate over",
            classification="validation",
        )
    left = (end - max(effective, start)).total_seconds() / (end - start).total_seconds()
    remaining = Decimal(str(min(1.0, max(0.0, left))))
    before, after = _charges(change.previous_items), _charges(sub.items)
    by_account: dict[str, int] = defaultdict(int)
    for price_id in sorted(before.keys() | after.keys()):
        item, new = after.get(price_id) or (before[price_id][0], 0)
        old = before.get(price_id, (item, 0))[1]
        prorated = int(((new - old) * remaining).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        if prorated:
            account = mappings.product(
                product_id=item.product_id, price_id=item.price_id
            ).revenue_account
            by_account[account] += prorated
    return ProrationImpact(
        external_id=proration_key(change),
        subscription_id=sub.subscription_id,
        currency=mappings.currency(sub.currency).erp_currency,
        effective_on=effective.date(),
        remaining=remaining,
        by_account=tuple((a, n) for a, n in sorted(by_account.items()) if n),
        mappings_version=mappings.version,
    )


def journal(
    impact: ProrationImpact,
    *,
    receivable_account: str,
    subsidiary: str,
    reverse: bool = False,
) -> JournalEntryRecord:
    """The impact as a balanced journal entry; `reverse` gives the entry that undoes it."""
    sign = -1 if reverse else 1
    lines = [
        _line(account, -amount * sign, f"proration of {impact.subscription_id}")
        for account, amount in impact.by_account
    ]
    lines.append(_line(receivable_account, impact.total_minor * sign, "unbilled receivable"))
    kept = tuple(line for line in lines if line.debit_minor or line.credit_minor)
    share = f"{impact.remaining * 100:.2f}% of the period left"
    return JournalEntryRecord(
        external_id=f"{impact.external_id}:reversal" if reverse else impact.external_id,
        currency=impact.currency,
        posted_on=impact.effective_on,
        lines=kept,
        memo=f"{'Reversal of p' if reverse else 'P'}roration of {impact.subscription_id}, "
        f"{share} (mappings v{impact.mappings_version})",
        subsidiary=subsidiary,
    )


def _line(account: str, debit_minor: int, memo: str) -> JournalLine:
    """A debit when positive, a credit when negative."""
    if debit_minor >= 0:
        return JournalLine(account=account, debit_minor=debit_minor, memo=memo)
    return JournalLine(account=account, credit_minor=-debit_minor, memo=memo)
