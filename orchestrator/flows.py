"""The subscription-to-cash workflows, declared: triggers, steps, targets, order, compensation."""

from pydantic import BaseModel

from lineage.enums import System
from orchestrator import amendment, erp_keys, quote_to_cash
from orchestrator.client.canonical import (
    DealEvent,
    Invoice,
    Payment,
    SubscriptionChange,
    Workflow,
)
from orchestrator.client.catalog import SLA_S
from orchestrator.connectors.errors import Terminal
from orchestrator.connectors.ports import CallContext, TargetRecord
from orchestrator.deps import WorkerDeps
from orchestrator.enrichment import subscription_context
from orchestrator.usage_flow import USAGE_SUMMARY
from orchestrator.workflows import RetryPolicy, StepSpec, WorkflowSpec


def _change(data: BaseModel) -> SubscriptionChange:
    assert isinstance(data, SubscriptionChange)
    return data


def _payment(data: BaseModel) -> Payment:
    assert isinstance(data, Payment)
    return data


def _sub_id(data: BaseModel) -> str:
    return _change(data).subscription.subscription_id


def _customer_id(data: BaseModel) -> str:
    return _change(data).subscription.customer_id


def _invoice_id(data: BaseModel) -> str:
    if isinstance(data, Invoice):
        return data.invoice_id
    return _payment(data).invoice_id


def _paid_key(data: BaseModel) -> str:
    return f"paid:{_payment(data).invoice_id}"


def _failed_key(data: BaseModel) -> str:
    payment = _payment(data)
    return f"payment_failed:{payment.invoice_id}:{payment.attempt_count}"


def _dunning_key(data: BaseModel) -> str:
    payment = _payment(data)
    return f"dunning:{payment.invoice_id}:{payment.attempt_count}"


async def _find_task(deps: WorkerDeps, external_id: str, ctx: CallContext) -> TargetRecord | None:
    return await deps.crm.find_task(external_id, ctx=ctx)


async def _find_ticket(deps: WorkerDeps, external_id: str, ctx: CallContext) -> TargetRecord | None:
    return await deps.support.find_ticket(external_id, ctx=ctx)


# --- invoice generated: post it to the ERP (which opens the receivable) ---


async def _post_invoice(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    assert isinstance(data, Invoice)
    return await deps.erp.post_invoice(data, ctx=ctx)


def _fork_invoice(data: BaseModel, suffix: str) -> BaseModel:
    assert isinstance(data, Invoice)
    return data.model_copy(update={"invoice_id": f"{data.invoice_id}{suffix}"})


async def _find_invoice(
    deps: WorkerDeps, external_id: str, ctx: CallContext
) -> TargetRecord | None:
    return await deps.erp.find_invoice(external_id, ctx=ctx)


INVOICE_GENERATED = WorkflowSpec(
    name=Workflow.INVOICE_GENERATED,
    triggers=("invoice.finalized", "com.concord.invoice.generated"),
    input_model=Invoice,
    steps=(
        StepSpec(
            "erp.post_invoice",
            System.ERP,
            _post_invoice,
            _invoice_id,
            lookup=_find_invoice,
            fork=_fork_invoice,
        ),
    ),
    sla_s=SLA_S[Workflow.INVOICE_GENERATED],
)


# --- subscription activated: CRM, the ERP chain and provisioning run side by side ---


async def _crm_account(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    return await deps.crm.upsert_account(customer_id=_customer_id(data), ctx=ctx)


async def _crm_contract(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    sub = _change(data).subscription
    return await deps.crm.upsert_contract(
        subscription=sub, value_minor=sub.contract_value_minor, ctx=ctx
    )


async def _erp_customer(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    sub = _change(data).subscription
    return await deps.erp.upsert_customer(
        customer_id=sub.customer_id, currency=sub.currency, ctx=ctx
    )


async def _erp_contract(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    return await deps.erp.upsert_contract(subscription=_change(data).subscription, ctx=ctx)


async def _find_contract(
    deps: WorkerDeps, external_id: str, ctx: CallContext
) -> TargetRecord | None:
    return await deps.erp.find_contract(external_id, ctx=ctx)


async def _find_payment(
    deps: WorkerDeps, external_id: str, ctx: CallContext
) -> TargetRecord | None:
    return await deps.erp.find_payment(external_id, ctx=ctx)


async def _tenant_on(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    return await deps.provisioning.set_tenant(
        subscription=_change(data).subscription, enabled=True, ctx=ctx
    )


async def _tenant_off(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    return await deps.provisioning.set_tenant(
        subscription=_change(data).subscription, enabled=False, ctx=ctx
    )


SUBSCRIPTION_ACTIVATED = WorkflowSpec(
    name=Workflow.SUBSCRIPTION_ACTIVATED,
    triggers=("customer.subscription.created",),
    input_model=SubscriptionChange,
    steps=(
        StepSpec("crm.upsert_account", System.CRM, _crm_account, _customer_id),
        StepSpec(
            "crm.upsert_contract",
            System.CRM,
            _crm_contract,
            _sub_id,
            depends_on=("crm.upsert_account",),
        ),
        StepSpec("erp.upsert_customer", System.ERP, _erp_customer, _customer_id),
        StepSpec(
            "erp.upsert_contract",
            System.ERP,
            _erp_contract,
            erp_keys.version_of,
            lookup=_find_contract,
            depends_on=("erp.upsert_customer",),
        ),
        StepSpec("provisioning.enable_tenant", System.PROVISIONING, _tenant_on, _sub_id),
    ),
    sla_s=SLA_S[Workflow.SUBSCRIPTION_ACTIVATED],
)


# --- subscription amended (orchestrator.amendment): enrich, CRM, the ERP's proration and
# contract, analytics; a terminal ERP failure reverses the proration and restores the CRM ---


async def _crm_restore(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    change = _change(data)
    previous = change.previous_contract_value_minor
    assert previous is not None  # routing only starts amendments that name what changed
    return await deps.crm.upsert_contract(
        subscription=change.subscription, value_minor=previous, ctx=ctx
    )


SUBSCRIPTION_AMENDED = WorkflowSpec(
    name=Workflow.SUBSCRIPTION_AMENDED,
    triggers=("customer.subscription.updated",),
    input_model=SubscriptionChange,
    steps=(
        StepSpec(amendment.READ_ACCOUNT, System.CRM, amendment.read_account, _customer_id),
        StepSpec(
            amendment.READ_DIMENSIONS,
            System.ERP,
            amendment.read_dimensions,
            _customer_id,
            on_superseded=True,
        ),
        StepSpec(
            "crm.update_contract",
            System.CRM,
            _crm_contract,
            _sub_id,
            compensate=_crm_restore,
            depends_on=(amendment.READ_ACCOUNT,),
        ),
        StepSpec(
            "erp.post_proration",
            System.ERP,
            amendment.post_proration,
            amendment.proration_external_id,
            lookup=amendment.find_proration,
            compensate=amendment.reverse_proration,
            depends_on=("crm.update_contract", amendment.READ_DIMENSIONS),
            uses=(amendment.READ_DIMENSIONS,),
            on_superseded=True,
        ),
        StepSpec(
            "erp.amend_contract",
            System.ERP,
            _erp_contract,
            erp_keys.version_of,
            lookup=_find_contract,
            depends_on=("erp.post_proration",),
        ),
        StepSpec(
            amendment.TRACK,
            System.ANALYTICS,
            amendment.track,
            _sub_id,
            depends_on=("erp.amend_contract",),
            uses=(amendment.READ_ACCOUNT,),
            undo_on_failure=False,
        ),
    ),
    sla_s=SLA_S[Workflow.SUBSCRIPTION_AMENDED],
    requires=(Workflow.SUBSCRIPTION_ACTIVATED,),
    superseded_by=(Workflow.SUBSCRIPTION_AMENDED, Workflow.SUBSCRIPTION_CANCELED),
)


# --- subscription canceled ---


async def _crm_close(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    sub = _change(data).subscription
    return await deps.crm.upsert_contract(subscription=sub, value_minor=0, ctx=ctx)


async def _erp_end(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    return await deps.erp.end_contract(subscription=_change(data).subscription, ctx=ctx)


SUBSCRIPTION_CANCELED = WorkflowSpec(
    name=Workflow.SUBSCRIPTION_CANCELED,
    triggers=("customer.subscription.deleted",),
    input_model=SubscriptionChange,
    steps=(
        StepSpec("crm.close_contract", System.CRM, _crm_close, _sub_id),
        StepSpec(
            "erp.end_contract",
            System.ERP,
            _erp_end,
            erp_keys.end_of,
            lookup=_find_contract,
        ),
        StepSpec("provisioning.disable_tenant", System.PROVISIONING, _tenant_off, _sub_id),
    ),
    sla_s=SLA_S[Workflow.SUBSCRIPTION_CANCELED],
    requires=(Workflow.SUBSCRIPTION_ACTIVATED,),
)


# --- invoice paid: never before the invoice itself is posted ---


async def _erp_payment(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    return await deps.erp.apply_payment(payment=_payment(data), ctx=ctx)


async def _crm_paid(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    payment = _payment(data)
    return await deps.crm.create_task(
        external_id=_paid_key(data),
        subject=f"Invoice {payment.invoice_id} paid",
        body=f"{payment.amount_minor} {payment.currency} (minor units) received from "
        f"{payment.customer_id}.",
        due=None,
        ctx=ctx,
    )


INVOICE_PAID = WorkflowSpec(
    name=Workflow.INVOICE_PAID,
    triggers=("invoice.paid",),
    input_model=Payment,
    steps=(
        StepSpec(
            "erp.apply_payment",
            System.ERP,
            _erp_payment,
            erp_keys.payment_of,
            lookup=_find_payment,
        ),
        StepSpec(
            "crm.record_payment",
            System.CRM,
            _crm_paid,
            _paid_key,
            lookup=_find_task,
            depends_on=("erp.apply_payment",),
        ),
    ),
    sla_s=SLA_S[Workflow.INVOICE_PAID],
    requires=(Workflow.INVOICE_GENERATED,),
)


# --- payment failed: real time, three independent notifications ---


async def _crm_flag(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    payment = _payment(data)
    return await deps.crm.create_task(
        external_id=_failed_key(data),
        subject=f"Payment failed: {payment.customer_id}",
        body=f"Invoice {payment.invoice_id}: {payment.failure_message or 'payment failed'}",
        due=None,
        ctx=ctx,
    )


async def _ticket(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    payment = _payment(data)
    return await deps.support.open_ticket(
        external_id=_failed_key(data),
        customer_id=payment.customer_id,
        subject=f"Payment failed for invoice {payment.invoice_id}",
        body=f"{payment.amount_minor} {payment.currency} minor units due; "
        f"attempt {payment.attempt_count}. {payment.failure_message or ''}".strip(),
        ctx=ctx,
    )


async def _dunning(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    # Collections retries the charge when billing's dunning schedule says it is due.
    payment = _payment(data)
    return await deps.crm.create_task(
        external_id=_dunning_key(data),
        subject=f"Retry payment of invoice {payment.invoice_id}",
        body=f"Attempt {payment.attempt_count + 1} of {payment.amount_minor} {payment.currency} "
        "(minor units).",
        due=payment.next_attempt_at,
        ctx=ctx,
    )


_REAL_TIME = RetryPolicy(max_attempts=4, base_s=0.2, cap_s=2.0, budget_s=30.0)

PAYMENT_FAILED = WorkflowSpec(
    name=Workflow.PAYMENT_FAILED,
    triggers=("invoice.payment_failed",),
    input_model=Payment,
    steps=(
        StepSpec(
            "crm.flag_account",
            System.CRM,
            _crm_flag,
            _failed_key,
            lookup=_find_task,
            retry=_REAL_TIME,
        ),
        StepSpec(
            "support.open_ticket",
            System.SUPPORT,
            _ticket,
            _failed_key,
            lookup=_find_ticket,
            retry=_REAL_TIME,
        ),
        StepSpec(
            "crm.schedule_dunning",
            System.CRM,
            _dunning,
            _dunning_key,
            lookup=_find_task,
            retry=_REAL_TIME,
        ),
    ),
    sla_s=SLA_S[Workflow.PAYMENT_FAILED],
)


# --- renewal risk: customer success gets a task with what billing and Concord know ---


def _deal(data: BaseModel) -> DealEvent:
    assert isinstance(data, DealEvent)
    return data


def _deal_key(data: BaseModel) -> str:
    deal = _deal(data)
    return f"{deal.deal_id}:{deal.occurred_at.isoformat() if deal.occurred_at else 'now'}"


def _risk_key(data: BaseModel) -> str:
    return f"renewal_risk:{_deal_key(data)}"


async def _success_task(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    deal = _deal(data)
    context = await subscription_context(deps.sessionmaker, deal.source_id)
    if deal.note:
        context = f"{context}\nWhy it was flagged: {deal.note}"
    return await deps.crm.create_task(
        external_id=_risk_key(data),
        subject=f"Renewal risk ({deal.property_value}) on deal {deal.deal_id}",
        body=context,
        due=None,
        ctx=ctx,
    )


async def _billing_flag(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    deal = _deal(data)
    if not deal.source_id or not deal.source_id.startswith("sub_"):
        raise Terminal(
            f"deal {deal.deal_id} names no billing subscription (sourceId "
            f"{deal.source_id!r}); nothing to flag in billing"
        )
    flagged_at = deal.occurred_at.isoformat() if deal.occurred_at else ""
    return await deps.billing.flag_subscription(
        subscription_id=deal.source_id,
        metadata={
            "renewal_risk": deal.property_value,
            "renewal_risk_deal": deal.deal_id,
            "renewal_risk_at": flagged_at,
        },
        ctx=ctx,
    )


RENEWAL_RISK = WorkflowSpec(
    name=Workflow.RENEWAL_RISK,
    triggers=("deal.propertyChange:renewal_risk", "com.concord.renewal_risk.identified"),
    input_model=DealEvent,
    steps=(
        StepSpec(
            "crm.create_success_task", System.CRM, _success_task, _risk_key, lookup=_find_task
        ),
        StepSpec("billing.flag_subscription", System.BILLING, _billing_flag, _deal_key),
    ),
    sla_s=SLA_S[Workflow.RENEWAL_RISK],
)


# --- quote-to-cash: a won deal is validated, then billed (orchestrator.quote_to_cash) ---

DEAL_CLOSED_WON = WorkflowSpec(
    name=Workflow.DEAL_CLOSED_WON,
    triggers=("deal.propertyChange:dealstage",),
    input_model=DealEvent,
    steps=(
        # The validated order is the step's output; billing builds from it, not the CRM.
        StepSpec(
            quote_to_cash.VALIDATE, System.CRM, quote_to_cash.validate, quote_to_cash.deal_key
        ),
        StepSpec(
            "billing.upsert_customer",
            System.BILLING,
            quote_to_cash.billing_customer,
            quote_to_cash.deal_key,
            depends_on=(quote_to_cash.VALIDATE,),
            uses=(quote_to_cash.VALIDATE,),
        ),
        StepSpec(
            "billing.create_subscription",
            System.BILLING,
            quote_to_cash.billing_subscription,
            quote_to_cash.subscription_key,
            lookup=quote_to_cash.find_subscription,
            depends_on=("billing.upsert_customer",),
            uses=(quote_to_cash.VALIDATE,),
        ),
    ),
    sla_s=SLA_S[Workflow.DEAL_CLOSED_WON],
)


WORKFLOWS: dict[str, WorkflowSpec] = {
    spec.name.value: spec
    for spec in (
        INVOICE_GENERATED,
        SUBSCRIPTION_ACTIVATED,
        SUBSCRIPTION_AMENDED,
        SUBSCRIPTION_CANCELED,
        INVOICE_PAID,
        PAYMENT_FAILED,
        RENEWAL_RISK,
        DEAL_CLOSED_WON,
        USAGE_SUMMARY,
    )
}


# Within one ordering key, the order a business applies events that carry the same time:
# an invoice is posted before it is paid; a subscription starts before it changes or ends.
_RANK = {
    Workflow.INVOICE_GENERATED: 0,
    Workflow.INVOICE_PAID: 1,
    Workflow.PAYMENT_FAILED: 1,
    Workflow.SUBSCRIPTION_ACTIVATED: 0,
    Workflow.SUBSCRIPTION_AMENDED: 1,
    Workflow.SUBSCRIPTION_CANCELED: 2,
    Workflow.RENEWAL_RISK: 0,
    Workflow.DEAL_CLOSED_WON: 0,
}


def business_rank(workflow: str | None) -> int:
    return _RANK.get(Workflow(workflow), 0) if workflow in WORKFLOWS else 0
