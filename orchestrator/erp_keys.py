"""External IDs of ERP records whose ID is not the source object's own, known before anything
is posted: contract versions (revenue plans) and customer payments.

The workflows need them to look a record up after an ambiguous outcome, before posting it
again; the ERP adapter names what it posts with them.
"""

import hashlib
from collections.abc import Sequence

from pydantic import BaseModel

from orchestrator.client.canonical import (
    Payment,
    Subscription,
    SubscriptionChange,
    SubscriptionItem,
)

# Hex digits of an items digest; lookups of older proration IDs parse keys by this length.
DIGEST_CHARS = 10


def items_digest(*item_lists: Sequence[SubscriptionItem]) -> str:
    """DIGEST_CHARS hex digits naming what the lists hold (price, quantity, unit amount), in order.

    One list hashes exactly as contract versions always have, so the IDs of revenue plans
    already in the ERP stay the IDs their lookups ask for."""
    held = [[(i.price_id, i.quantity, i.unit_amount_minor) for i in items] for items in item_lists]
    digest = hashlib.sha256(repr(held[0] if len(held) == 1 else held).encode()).hexdigest()
    return digest[:DIGEST_CHARS]


def contract_external_id(subscription: Subscription) -> str:
    """One ID per contract version: the same items give the same ID, an amendment a new one."""
    return f"contract:{subscription.subscription_id}:{items_digest(subscription.items)}"


def ended_external_id(subscription: Subscription) -> str:
    return f"contract:{subscription.subscription_id}:ended"


def version_of(data: BaseModel) -> str:
    assert isinstance(data, SubscriptionChange)
    return contract_external_id(data.subscription)


def end_of(data: BaseModel) -> str:
    assert isinstance(data, SubscriptionChange)
    return ended_external_id(data.subscription)


def payment_external_id(payment: Payment) -> str:
    return f"payment:{payment.invoice_id}"


def payment_of(data: BaseModel) -> str:
    assert isinstance(data, Payment)
    return payment_external_id(data)
