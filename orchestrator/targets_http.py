"""The workflow ports over the vendor-shaped HTTP connectors (Stripe, NetSuite, HubSpot, ops)."""

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime

from orchestrator.client.canonical import Invoice, Payment, Subscription
from orchestrator.client.usage import UsageSummary
from orchestrator.connectors.errors import Conflict, Terminal
from orchestrator.connectors.hubspot import CrmObject, HubSpotCrm
from orchestrator.connectors.netsuite import NetSuiteErp
from orchestrator.connectors.ops import TenantProvisioning, ZendeskSupport
from orchestrator.connectors.ports import (
    CallContext,
    CompanyRecord,
    CustomerDimensions,
    CustomerRecord,
    DealRecord,
    JournalEntryRecord,
    PaymentRecord,
    RevenueScheduleRecord,
    TargetRecord,
    TaskRecord,
    TenantRecord,
    TicketRecord,
)
from orchestrator.connectors.stripe_billing import StripeBilling
from orchestrator.erp_keys import (
    contract_external_id,
    ended_external_id,
    payment_external_id,
)
from orchestrator.mappings import Coding, Mappings, code_contract, code_invoice
from orchestrator.usage import journal_entry


def _months(subscription: Subscription) -> tuple[tuple[str, int], ...]:
    """Twelve monthly slices of the annual contract value, the remainder in the last one."""
    start = subscription.current_period_start or datetime.now(UTC)
    total = subscription.contract_value_minor
    share, rest = divmod(total, 12)
    periods = []
    for n in range(12):
        year, month = divmod(start.month - 1 + n, 12)
        periods.append(
            (f"{start.year + year:04d}-{month + 1:02d}", share + (rest if n == 11 else 0))
        )
    return tuple(periods)


def _coded(record: TargetRecord, coding: Coding) -> TargetRecord:
    """The posting with how it was coded as its step output: lineage then names the mappings
    version behind each posting."""
    return dataclasses.replace(
        record,
        output={
            "mappings_version": coding.version,
            "legal_entity": coding.legal_entity,
            "subsidiary": coding.subsidiary,
            "tax_code": coding.tax_code,
        },
    )


class NetSuiteLedger:
    """ErpLedger over NetSuiteErp: customers upserted, contracts and payments created once.

    Invoices and contracts are coded by the mappings (entity, currency, items, revenue
    accounts, tax code); a code the mappings lack stops the step with MappingMissing.
    """

    def __init__(
        self,
        erp: NetSuiteErp,
        *,
        mappings: Mappings,
        usage_accounts: tuple[str, str] = ("1210", "4100"),
    ) -> None:
        self._erp = erp
        self._mappings = mappings
        # (unbilled receivable, usage revenue): the accounts a usage summary is accrued to.
        self._usage_accounts = usage_accounts

    async def post_usage_summary(self, summary: UsageSummary, *, ctx: CallContext) -> TargetRecord:
        receivable, revenue = self._usage_accounts
        entry = journal_entry(summary, receivable_account=receivable, revenue_account=revenue)
        return await self.post_journal(entry, ctx=ctx)

    async def find_usage_summary(
        self, external_id: str, *, ctx: CallContext
    ) -> TargetRecord | None:
        return await self.find_journal(external_id, ctx=ctx)

    async def post_invoice(self, invoice: Invoice, *, ctx: CallContext) -> TargetRecord:
        coding = code_invoice(self._mappings, invoice)
        return _coded(await self._erp.post_invoice(invoice, ctx=ctx, coding=coding), coding)

    async def find_invoice(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        return await self._erp.find_invoice(external_id, ctx=ctx)

    async def upsert_customer(
        self, *, customer_id: str, currency: str, ctx: CallContext
    ) -> TargetRecord:
        _, entity = self._mappings.legal_entity(customer_id=customer_id, currency=currency)
        record = CustomerRecord(
            external_id=customer_id,
            name=customer_id,
            currency=currency,
            subsidiary=entity.subsidiary,
        )
        return await self._erp.upsert_customer(record, ctx=ctx)

    async def customer_dimensions(
        self, customer_id: str, *, ctx: CallContext
    ) -> CustomerDimensions | None:
        record = await self._erp.read_record("customer", customer_id, ctx=ctx)
        if record is None:
            return None
        subsidiary, currency = record.get("subsidiary"), record.get("currency")
        return CustomerDimensions(
            record_id=record["id"],
            subsidiary=str(subsidiary["id"]) if isinstance(subsidiary, dict) else None,
            currency=str(currency["refName"]) if isinstance(currency, dict) else None,
        )

    async def post_journal(self, entry: JournalEntryRecord, *, ctx: CallContext) -> TargetRecord:
        try:
            return await self._erp.post_journal_entry(entry, ctx=ctx)
        except Conflict:
            return await self._existing("journalentry", entry.external_id, ctx)

    async def find_journal(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        return await self._erp.find_record("journalentry", external_id, ctx=ctx)

    async def find_contract(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        return await self._erp.find_record("revenueplan", external_id, ctx=ctx)

    async def find_payment(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        return await self._erp.find_record("customerpayment", external_id, ctx=ctx)

    async def upsert_contract(
        self, *, subscription: Subscription, ctx: CallContext
    ) -> TargetRecord:
        # A new plan per contract version: an amendment adds one, a repeat finds its own.
        return await self._plan(
            subscription, contract_external_id(subscription), _months(subscription), ctx
        )

    async def end_contract(self, *, subscription: Subscription, ctx: CallContext) -> TargetRecord:
        # NetSuite refuses a revenue plan without lines: the end is one zero line in the month
        # the subscription ended, so no further revenue is planned.
        end = subscription.ended_at or datetime.now(UTC)
        return await self._plan(
            subscription,
            ended_external_id(subscription),
            ((f"{end.year:04d}-{end.month:02d}", 0),),
            ctx,
        )

    async def apply_payment(self, *, payment: Payment, ctx: CallContext) -> TargetRecord:
        paid_on = (payment.occurred_at or datetime.now(UTC)).date()
        record = PaymentRecord(
            external_id=payment_external_id(payment),
            customer_external_id=payment.customer_id,
            invoice_external_id=payment.invoice_id,
            amount_minor=payment.amount_minor,
            currency=payment.currency,
            paid_on=paid_on,
        )
        try:
            return await self._erp.post_payment(record, ctx=ctx)
        except Conflict:
            return await self._existing("customerpayment", record.external_id, ctx)

    async def _plan(
        self,
        subscription: Subscription,
        external_id: str,
        periods: tuple[tuple[str, int], ...],
        ctx: CallContext,
    ) -> TargetRecord:
        schedule = RevenueScheduleRecord(
            external_id=external_id,
            invoice_external_id=subscription.subscription_id,
            currency=subscription.currency,
            amount_minor=sum(amount for _, amount in periods),
            periods=periods,
        )
        coding = code_contract(self._mappings, subscription)
        try:
            posted = await self._erp.post_revenue_schedule(schedule, ctx=ctx, coding=coding)
        except Conflict:
            # Posted before, perhaps under other mappings: no claim about how it was coded.
            return await self._existing("revenueplan", external_id, ctx)
        return _coded(posted, coding)

    async def _existing(self, record_type: str, external_id: str, ctx: CallContext) -> TargetRecord:
        found = await self._erp.find_record(record_type, external_id, ctx=ctx)
        if found is None:
            raise Conflict(f"{record_type} {external_id} conflicts but cannot be found")
        return found

    async def aclose(self) -> None:
        await self._erp.aclose()


class HubSpotAccounts:
    """Crm over HubSpotCrm: companies by customer ID, deals by subscription ID, tasks."""

    def __init__(self, crm: HubSpotCrm) -> None:
        self._crm = crm

    async def upsert_account(self, *, customer_id: str, ctx: CallContext) -> TargetRecord:
        return await self._crm.upsert_company(
            CompanyRecord(external_id=customer_id, name=customer_id), ctx=ctx
        )

    async def upsert_contract(
        self, *, subscription: Subscription, value_minor: int, ctx: CallContext
    ) -> TargetRecord:
        renewal = (
            subscription.current_period_end.date() if subscription.current_period_end else None
        )
        return await self._crm.upsert_deal(
            DealRecord(
                external_id=subscription.subscription_id,
                name=f"Subscription {subscription.subscription_id}",
                amount_minor=value_minor,
                currency=subscription.currency,
                stage="closedwon" if value_minor else "closedlost",
                company_external_id=subscription.customer_id,
                renewal_date=renewal,
                renewal_baseline_minor=value_minor or None,
            ),
            ctx=ctx,
        )

    async def create_task(
        self, *, external_id: str, subject: str, body: str, due: datetime | None, ctx: CallContext
    ) -> TargetRecord:
        try:
            return await self._crm.create_task(
                TaskRecord(external_id=external_id, subject=subject, body=body, due=due), ctx=ctx
            )
        except Conflict:
            found = await self._crm.find("tasks", external_id, ctx=ctx)
            if found is None:
                raise
            return found

    async def read(
        self,
        object_type: str,
        object_id: str,
        *,
        associations: Sequence[str] = (),
        ctx: CallContext,
    ) -> CrmObject | None:
        return await self._crm.read(object_type, object_id, associations=associations, ctx=ctx)

    async def find_task(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        return await self._crm.find("tasks", external_id, ctx=ctx)

    async def account(self, *, customer_id: str, ctx: CallContext) -> CrmObject | None:
        return await self._crm.read(
            "companies", customer_id, associations=("deals",), by_external_id=True, ctx=ctx
        )

    async def aclose(self) -> None:
        await self._crm.aclose()


class StripeSubscriptions:
    """Billing over StripeBilling: customers and subscriptions by external ID, metadata flags."""

    def __init__(self, billing: StripeBilling) -> None:
        self._billing = billing

    async def ensure_customer(
        self, *, external_id: str, name: str, email: str | None, ctx: CallContext
    ) -> TargetRecord:
        found = await self._billing.find_customer(external_id, ctx=ctx)
        if found is not None:
            return found
        record = CustomerRecord(external_id=external_id, name=name, email=email)
        try:
            return await self._billing.create_customer(record, ctx=ctx)
        except Conflict:
            again = await self._billing.find_customer(external_id, ctx=ctx)
            if again is None:
                raise
            return again

    async def create_subscription(
        self,
        *,
        external_id: str,
        customer_external_id: str,
        plans: Sequence[tuple[str, int]],
        metadata: dict[str, str],
        days_until_due: int | None,
        ctx: CallContext,
    ) -> TargetRecord:
        customer = await self._billing.find_customer(customer_external_id, ctx=ctx)
        if customer is None:
            raise Terminal(f"billing has no customer with external ID {customer_external_id}")
        items = []
        for lookup_key, quantity in plans:
            price = await self._billing.find_price(lookup_key, ctx=ctx)
            if price is None:
                raise Terminal(
                    f"billing has no active price with lookup_key {lookup_key!r}",
                    classification="mapping_missing",
                )
            items.append((price, quantity))
        return await self._billing.create_subscription(
            external_id=external_id,
            customer_id=customer.record_id,
            items=items,
            metadata=metadata,
            days_until_due=days_until_due,
            ctx=ctx,
        )

    async def find_subscription(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        return await self._billing.find_subscription(external_id, ctx=ctx)

    async def flag_subscription(
        self, *, subscription_id: str, metadata: dict[str, str], ctx: CallContext
    ) -> TargetRecord:
        return await self._billing.update_subscription_metadata(subscription_id, metadata, ctx=ctx)

    async def aclose(self) -> None:
        await self._billing.aclose()


class OpsTenants:
    def __init__(self, provisioning: TenantProvisioning) -> None:
        self._provisioning = provisioning

    async def set_tenant(
        self, *, subscription: Subscription, enabled: bool, ctx: CallContext
    ) -> TargetRecord:
        plan = subscription.items[0].price_id if subscription.items else None
        return await self._provisioning.set_tenant(
            TenantRecord(
                external_id=subscription.subscription_id,
                name=subscription.customer_id,
                plan=plan,
                enabled=enabled,
            ),
            ctx=ctx,
        )

    async def aclose(self) -> None:
        await self._provisioning.aclose()


class OpsTickets:
    def __init__(self, support: ZendeskSupport) -> None:
        self._support = support

    async def open_ticket(
        self, *, external_id: str, customer_id: str, subject: str, body: str, ctx: CallContext
    ) -> TargetRecord:
        return await self._support.open_ticket(
            TicketRecord(
                external_id=external_id,
                subject=subject,
                body=f"{body}\nCustomer: {customer_id}",
                tags=("concord",),
            ),
            ctx=ctx,
        )

    async def find_ticket(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        return await self._support.find_ticket(external_id, ctx=ctx)

    async def aclose(self) -> None:
        await self._support.aclose()
