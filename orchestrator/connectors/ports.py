"""What the workflows need of each outside system; adapters implement these."""

from dataclasses import dataclass
from typing import Protocol

from lineage.enums import System
from orchestrator.client.canonical import Invoice


@dataclass(frozen=True, slots=True)
class CallContext:
    """Travels with every outbound call: idempotency, external identity and tracing."""

    correlation_id: str
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class TargetRecord:
    """A record as the target system holds it."""

    system: System
    object_type: str
    record_id: str
    external_id: str
    http_status: int | None = None


class ErpConnector(Protocol):
    async def post_invoice(self, invoice: Invoice, *, ctx: CallContext) -> TargetRecord:
        """Create the invoice; raise Conflict if its external ID already exists."""
        ...

    async def find_invoice(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        """Look an invoice up by the external ID Concord gave it."""
        ...

    async def aclose(self) -> None: ...
