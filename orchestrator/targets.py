"""What the workflows need of each outside system, beyond posting invoices.

HTTP adapters (orchestrator.targets_http) implement these over the vendor-shaped connectors;
tests use in-repo fakes. Every method is idempotent by the external ID it is given, so
repeating one after an ambiguous outcome cannot create a second record.
"""

from datetime import datetime
from typing import Protocol

from orchestrator.client.canonical import Payment, Subscription
from orchestrator.connectors.ports import CallContext, ErpConnector, TargetRecord


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

    async def aclose(self) -> None: ...
