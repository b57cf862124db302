"""What the workflows need of each outside system, beyond posting invoices.

HTTP adapters (orchestrator.targets_http) implement these over the vendor-shaped connectors;
tests use in-repo fakes. Every method is idempotent by the external ID it is given, so
repeating one after an ambiguous outcome cannot create a second record.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from orchestrator.client.canonical import Payment, Subscription
from orchestrator.client.usage import UsageSummary
from orchestrator.connectors.hubspot import CrmObject
from orchestrator.connectors.ports import (
    CallContext,
    CustomerDimensions,
    ErpConnector,
    JournalEntryRecord,
    TargetRecord,
)


class ErpLedger(ErpConnector, Protocol):
    async def upsert_customer(
        self, *, customer_id: str, currency: str, ctx: CallContext
    ) -> TargetRecord: ...

    async def upsert_contract(
        self, *, subscription: Subscription, ctx: CallContext
    ) -> TargetRecord:
        """The financial contract as a revenue plan; each contract version is its own record."""
        ...

    async def end_contract(
        self, *, subscription: Subscription, ctx: CallContext
    ) -> TargetRecord: ...

    async def apply_payment(self, *, payment: Payment, ctx: CallContext) -> TargetRecord: ...

    async def post_usage_summary(self, summary: UsageSummary, *, ctx: CallContext) -> TargetRecord:
        """One period's usage as one ERP document, named by summary.external_id."""
        ...

    async def find_usage_summary(
        self, external_id: str, *, ctx: CallContext
    ) -> TargetRecord | None: ...

    async def customer_dimensions(
        self, customer_id: str, *, ctx: CallContext
    ) -> CustomerDimensions | None:
        """The ERP's customer master for a billing customer; None if the ERP has none."""
        ...

    async def post_journal(self, entry: JournalEntryRecord, *, ctx: CallContext) -> TargetRecord:
        """A journal entry, once per external ID: a repeat returns the one already posted."""
        ...

    async def find_journal(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None: ...

    async def find_contract(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        """A contract version by its external ID (orchestrator.erp_keys)."""
        ...

    async def find_payment(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        """A customer payment by its external ID (orchestrator.erp_keys)."""
        ...


class Crm(Protocol):
    async def upsert_account(self, *, customer_id: str, ctx: CallContext) -> TargetRecord: ...

    async def upsert_contract(
        self, *, subscription: Subscription, value_minor: int, ctx: CallContext
    ) -> TargetRecord:
        """The deal that carries the contract value and renewal date."""
        ...

    async def create_task(
        self, *, external_id: str, subject: str, body: str, due: datetime | None, ctx: CallContext
    ) -> TargetRecord:
        """A task for a person: flag an account, mark an invoice paid, schedule a dunning."""
        ...

    async def find_task(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None: ...

    async def read(
        self,
        object_type: str,
        object_id: str,
        *,
        associations: Sequence[str] = (),
        ctx: CallContext,
    ) -> CrmObject | None:
        """A record by the CRM's own ID, with its associations; None if it does not exist."""
        ...

    async def account(self, *, customer_id: str, ctx: CallContext) -> CrmObject | None:
        """The company Concord keeps for a billing customer, with its deals; None if none."""
        ...

    async def aclose(self) -> None: ...


class Billing(Protocol):
    """Billing writes: quote-to-cash creates customers and subscriptions; renewal risk flags one.

    Creates carry an idempotency key and put the external ID in metadata, so the find_* calls
    settle an ambiguous outcome.
    """

    async def ensure_customer(
        self, *, external_id: str, name: str, email: str | None, ctx: CallContext
    ) -> TargetRecord: ...

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
        """`plans` as (price lookup key, quantity)."""
        ...

    async def find_subscription(
        self, external_id: str, *, ctx: CallContext
    ) -> TargetRecord | None: ...

    async def flag_subscription(
        self, *, subscription_id: str, metadata: dict[str, str], ctx: CallContext
    ) -> TargetRecord: ...

    async def aclose(self) -> None: ...


class Provisioning(Protocol):
    async def set_tenant(
        self, *, subscription: Subscription, enabled: bool, ctx: CallContext
    ) -> TargetRecord: ...

    async def aclose(self) -> None: ...


class Support(Protocol):
    async def open_ticket(
        self, *, external_id: str, customer_id: str, subject: str, body: str, ctx: CallContext
    ) -> TargetRecord: ...

    async def find_ticket(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None: ...

    async def aclose(self) -> None: ...


class Analytics(Protocol):
    """Product analytics (Segment): events only, no reads.

    A repeat is deduplicated by the target on the call's idempotency key, so the step needs no
    lookup; `external_id` is what the returned record names.
    """

    async def track(
        self,
        *,
        user_id: str,
        event: str,
        properties: dict[str, object],
        timestamp: datetime | None,
        external_id: str,
        ctx: CallContext,
    ) -> TargetRecord: ...

    async def aclose(self) -> None: ...
