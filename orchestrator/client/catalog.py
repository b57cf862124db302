"""What the API needs to know of each workflow without importing the engine."""

from pydantic import BaseModel

from orchestrator.client.canonical import DealEvent, Invoice, Payment, SubscriptionChange, Workflow
from orchestrator.client.usage import UsageSummary

# Each workflow's canonical input; orchestrator.flows declares the same model per workflow,
# and tests/orchestrator/test_catalog.py keeps the two in step.
WORKFLOW_INPUTS: dict[Workflow, type[BaseModel]] = {
    Workflow.INVOICE_GENERATED: Invoice,
    Workflow.INVOICE_PAID: Payment,
    Workflow.PAYMENT_FAILED: Payment,
    Workflow.SUBSCRIPTION_ACTIVATED: SubscriptionChange,
    Workflow.SUBSCRIPTION_AMENDED: SubscriptionChange,
    Workflow.SUBSCRIPTION_CANCELED: SubscriptionChange,
    Workflow.RENEWAL_RISK: DealEvent,
    Workflow.DEAL_CLOSED_WON: DealEvent,
    Workflow.USAGE_SUMMARY: UsageSummary,
}

# Dotted paths of the fields that name the record in its targets: an edit that changes one
# would post a second record, which only an admin's forced re-posting may do.
IDENTITY_FIELDS: dict[Workflow, tuple[str, ...]] = {
    Workflow.INVOICE_GENERATED: ("invoice_id",),
    Workflow.INVOICE_PAID: ("invoice_id",),
    Workflow.PAYMENT_FAILED: ("invoice_id", "attempt_count"),
    Workflow.SUBSCRIPTION_ACTIVATED: ("subscription.subscription_id",),
    Workflow.SUBSCRIPTION_AMENDED: ("subscription.subscription_id",),
    Workflow.SUBSCRIPTION_CANCELED: ("subscription.subscription_id",),
    Workflow.RENEWAL_RISK: ("deal_id", "occurred_at"),
    Workflow.DEAL_CLOSED_WON: ("deal_id",),
    Workflow.USAGE_SUMMARY: ("subscription_id", "period", "currency", "sequence"),
}

# End-to-end SLA per workflow (event received to last step done), in seconds. The workflow
# definitions take their sla_s from here, so the API measures against the same targets.
SLA_S: dict[Workflow, float] = {
    Workflow.INVOICE_GENERATED: 300,
    Workflow.INVOICE_PAID: 900,
    Workflow.PAYMENT_FAILED: 10,
    Workflow.SUBSCRIPTION_ACTIVATED: 600,
    Workflow.SUBSCRIPTION_AMENDED: 900,
    Workflow.SUBSCRIPTION_CANCELED: 900,
    Workflow.RENEWAL_RISK: 3600,
    Workflow.DEAL_CLOSED_WON: 3600,
    # Measured from the summary's creation, which the schedule makes after the period closes.
    Workflow.USAGE_SUMMARY: 3600,
}
