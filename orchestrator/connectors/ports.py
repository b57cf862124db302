"""What the workflows need of each outside system; adapters implement these."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from lineage.enums import System
from orchestrator.client.canonical import Invoice


@dataclass(frozen=True, slots=True)
class CallContext:
    """Travels with every outbound call: idempotency, external identity and tracing."""

    correlation_id: str
    idempotency_key: str
    # The outputs of the earlier steps this step declared it `uses`, by step name.
    earlier: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TargetRecord:
    """A record as the target system holds it."""

    system: System
    object_type: str
    record_id: str
    external_id: str
    http_status: int | None = None
    # What the step hands on to later steps of its transaction (what an enrichment read);
    # kept in lineage with the step.
    output: Mapping[str, Any] | None = None


class ErpConnector(Protocol):
    async def post_invoice(self, invoice: Invoice, *, ctx: CallContext) -> TargetRecord:
        """Create the invoice; raise Conflict if its external ID already exists."""
        ...

    async def find_invoice(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        """Look an invoice up by the external ID Concord gave it."""
        ...

    async def aclose(self) -> None: ...


# -- Records the other ports carry (money in integer minor units, ISO 4217 currency) -----------


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    external_id: str
    name: str
    email: str | None = None
    currency: str | None = None
    subsidiary: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """A payment received and applied to one invoice, both named by their external IDs."""

    external_id: str
    customer_external_id: str
    invoice_external_id: str
    amount_minor: int
    currency: str
    paid_on: date


@dataclass(frozen=True, slots=True)
class JournalLine:
    account: str
    debit_minor: int = 0
    credit_minor: int = 0
    memo: str | None = None


@dataclass(frozen=True, slots=True)
class CustomerDimensions:
    """How the ERP books a customer: its record, subsidiary and currency, as the ERP holds them."""

    record_id: str
    subsidiary: str | None
    currency: str | None


@dataclass(frozen=True, slots=True)
class JournalEntryRecord:
    external_id: str
    currency: str
    posted_on: date
    lines: tuple[JournalLine, ...]
    memo: str | None = None
    subsidiary: str | None = None


@dataclass(frozen=True, slots=True)
class RevenueScheduleRecord:
    """Revenue of one invoice recognised over periods ("YYYY-MM", amount_minor)."""

    external_id: str
    invoice_external_id: str
    currency: str
    amount_minor: int
    periods: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class CompanyRecord:
    external_id: str
    name: str
    domain: str | None = None


@dataclass(frozen=True, slots=True)
class DealRecord:
    external_id: str
    name: str
    amount_minor: int
    currency: str
    stage: str
    company_external_id: str | None = None
    close_date: date | None = None
    renewal_date: date | None = None
    # The contract value a renewal is measured against; None leaves it as it is.
    renewal_baseline_minor: int | None = None


@dataclass(frozen=True, slots=True)
class TaskRecord:
    external_id: str
    subject: str
    body: str = ""
    priority: str = "MEDIUM"
    due: datetime | None = None


@dataclass(frozen=True, slots=True)
class TenantRecord:
    external_id: str
    name: str
    plan: str | None = None
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class TicketRecord:
    external_id: str
    subject: str
    body: str = ""
    priority: str = "normal"
    tags: tuple[str, ...] = ()


class ErpLedgerConnector(ErpConnector, Protocol):
    """The ERP beyond invoices. Creates raise Conflict on a known external ID; upserts do not."""

    async def upsert_customer(
        self, customer: CustomerRecord, *, ctx: CallContext
    ) -> TargetRecord: ...

    async def post_payment(self, payment: PaymentRecord, *, ctx: CallContext) -> TargetRecord: ...

    async def post_journal_entry(
        self, entry: JournalEntryRecord, *, ctx: CallContext
    ) -> TargetRecord: ...

    async def post_revenue_schedule(
        self, schedule: RevenueScheduleRecord, *, ctx: CallContext
    ) -> TargetRecord: ...

    async def find_record(
        self, object_type: str, external_id: str, *, ctx: CallContext
    ) -> TargetRecord | None: ...


class BillingConnector(Protocol):
    """Billing is a source: Concord reads it to look things up and to reconcile."""

    async def get_invoice(self, invoice_id: str, *, ctx: CallContext) -> Invoice | None: ...

    async def list_invoices(
        self, *, since: datetime, until: datetime, ctx: CallContext
    ) -> list[Invoice]: ...

    async def find_customer(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None: ...

    async def aclose(self) -> None: ...


class CrmConnector(Protocol):
    async def upsert_company(self, company: CompanyRecord, *, ctx: CallContext) -> TargetRecord: ...

    async def upsert_deal(self, deal: DealRecord, *, ctx: CallContext) -> TargetRecord: ...

    async def create_task(self, task: TaskRecord, *, ctx: CallContext) -> TargetRecord: ...

    async def find(
        self, object_type: str, external_id: str, *, ctx: CallContext
    ) -> TargetRecord | None: ...

    async def aclose(self) -> None: ...


class ProvisioningConnector(Protocol):
    async def set_tenant(self, tenant: TenantRecord, *, ctx: CallContext) -> TargetRecord: ...

    async def find_tenant(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None: ...

    async def aclose(self) -> None: ...


class SupportConnector(Protocol):
    async def open_ticket(self, ticket: TicketRecord, *, ctx: CallContext) -> TargetRecord: ...

    async def find_ticket(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None: ...

    async def aclose(self) -> None: ...
