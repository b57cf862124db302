"""External IDs of ERP records whose ID is not the source object's own, known before anything
is posted: contract versions (revenue plans) and customer payments.

The workflows need them to look a record up after an ambiguous outcome, before posting it
again; the ERP adapter names what it posts with them.
"""

import hashlib

from pydantic import BaseModel

from orchestrator.client.canonical import Payment, Subscription, SubscriptionChange


def contract_external_id(subscription: Subscription) -> str:
    """One ID per contract version: the same items give the same ID, an amendment a new one."""
    version = hashlib.sha256(
        repr([(i.price_id, i.quantity, i.unit_amount_minor) for i in subscription.items]).encode()
    ).hexdigest()[:10]
    return f"contract:{subscription.subscription_id}:{version}"


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
