"""Subscription amended: enrich, update the CRM, post the ERP's proration and new contract,
tell analytics.

The two enrichment steps read what the targets themselves hold (the CRM company behind the
customer, the ERP's customer master) and hand it on in lineage, so the later steps, a replay
and a person reading the transaction all see the same context.
"""

import dataclasses

from pydantic import BaseModel

from lineage.enums import System
from orchestrator.client.canonical import SubscriptionChange
from orchestrator.connectors.errors import Terminal
from orchestrator.connectors.ports import CallContext, JournalEntryRecord, TargetRecord
from orchestrator.deps import WorkerDeps
from orchestrator.proration import (
    ProrationImpact,
    journal,
    legacy_proration_key,
    proration_impact,
    proration_key,
)
from orchestrator.workflows import StepSkipped

READ_ACCOUNT = "crm.read_account"
READ_DIMENSIONS = "erp.read_dimensions"
TRACK = "analytics.track_amendment"

# The company properties customer success and analytics care about, when the CRM has them.
ACCOUNT_PROPERTIES = (
    "name",
    "domain",
    "industry",
    "lifecyclestage",
    "hubspot_owner_id",
    "tax_region",
    "payment_terms",
)


def _change(data: BaseModel) -> SubscriptionChange:
    assert isinstance(data, SubscriptionChange)
    return data


def proration_external_id(data: BaseModel) -> str:
    return proration_key(_change(data))


async def read_account(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    customer_id = _change(data).subscription.customer_id
    company = await deps.crm.account(customer_id=customer_id, ctx=ctx)
    if company is None:
        raise Terminal(
            f"the CRM has no company for customer {customer_id}; its activation creates one",
            classification="validation",
        )
    context = {k: company.properties[k] for k in ACCOUNT_PROPERTIES if company.properties.get(k)}
    return TargetRecord(
        System.CRM,
        "companies",
        company.object_id,
        customer_id,
        http_status=200,
        output={"company_id": company.object_id, "deals": len(company.linked("deals")), **context},
    )


async def read_dimensions(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    sub = _change(data).subscription
    found = await deps.erp.customer_dimensions(sub.customer_id, ctx=ctx)
    if found is None:
        raise Terminal(
            f"the ERP has no customer {sub.customer_id}; its activation creates one",
            classification="validation",
        )
    # A customer mastered before Concord coded subsidiaries has none: the mappings say which
    # subsidiary books it, and the output names where the figure came from.
    subsidiary, source = found.subsidiary, "erp"
    if subsidiary is None:
        _, entity = deps.mappings.legal_entity(customer_id=sub.customer_id, currency=sub.currency)
        subsidiary, source = entity.subsidiary, f"mappings v{deps.mappings.version}"
    return TargetRecord(
        System.ERP,
        "customer",
        found.record_id,
        sub.customer_id,
        http_status=200,
        output={
            "customer_record_id": found.record_id,
            "subsidiary": subsidiary,
            "subsidiary_from": source,
            "currency": found.currency or sub.currency,
        },
    )


def _proration(
    deps: WorkerDeps, data: BaseModel, ctx: CallContext, *, reverse: bool, nothing: str
) -> tuple[ProrationImpact, JournalEntryRecord]:
    """The amendment's proration entry (or its reversal); StepSkipped when it comes to zero."""
    impact = proration_impact(_change(data), deps.mappings)
    if not impact.by_account:
        raise StepSkipped(nothing.format(external_id=impact.external_id))
    entry = journal(
        impact,
        receivable_account=deps.settings.proration_receivable_account,
        subsidiary=str(ctx.earlier[READ_DIMENSIONS]["subsidiary"]),
        reverse=reverse,
    )
    return impact, entry


async def post_proration(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    impact, entry = _proration(
        deps, data, ctx, reverse=False, nothing="{external_id}: the change prorates to nothing"
    )
    record = await deps.erp.post_journal(entry, ctx=ctx)
    return dataclasses.replace(
        record,
        output={
            "journal_entry": entry.external_id,
            "amount_minor": impact.total_minor,
            "currency": impact.currency,
            "period_remaining": str(impact.remaining),
            "mappings_version": impact.mappings_version,
        },
    )


async def find_proration(
    deps: WorkerDeps, external_id: str, ctx: CallContext
) -> TargetRecord | None:
    found = await deps.erp.find_journal(external_id, ctx=ctx)
    legacy = legacy_proration_key(external_id)
    if found is None and legacy is not None:
        # A change whose first attempt (or first run) came before its key named its items.
        found = await deps.erp.find_journal(legacy, ctx=ctx)
    return found


async def reverse_proration(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    """The entry that undoes the proration: the same lines, debit and credit swapped."""
    _, entry = _proration(deps, data, ctx, reverse=True, nothing="the proration posted nothing")
    return await deps.erp.post_journal(entry, ctx=ctx)


async def track(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    change = _change(data)
    sub = change.subscription
    account = ctx.earlier[READ_ACCOUNT]
    # Segment cannot be asked what it holds, so a replay must not look like a new event: the
    # messageId is the transaction's own key, without the replay's run suffix.
    ctx = dataclasses.replace(ctx, idempotency_key=f"{ctx.correlation_id}:{TRACK}")
    return await deps.analytics.track(
        user_id=sub.customer_id,
        event="Subscription Amended",
        properties={
            "subscription_id": sub.subscription_id,
            "currency": sub.currency,
            "contract_value_minor": sub.contract_value_minor,
            "previous_contract_value_minor": change.previous_contract_value_minor,
            "plans": [f"{i.price_id}x{i.quantity}" for i in sub.items],
            "crm_company_id": account["company_id"],
            **{k: account[k] for k in ("industry", "lifecyclestage") if k in account},
        },
        timestamp=change.effective_at,
        external_id=sub.subscription_id,
        ctx=ctx,
    )
