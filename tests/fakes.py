"""An in-repo ERP fake with scripted failures, for engine paths the sandbox cannot yet force."""

from dataclasses import dataclass, field

from lineage.enums import System
from orchestrator.client.canonical import Invoice
from orchestrator.connectors.errors import ConnectorError
from orchestrator.connectors.ports import CallContext, TargetRecord


@dataclass
class ScriptedErp:
    """Raises the scripted errors in order, then succeeds; `commit_before_fail` stores first."""

    failures: list[ConnectorError] = field(default_factory=list)
    commit_before_fail: bool = False
    records: dict[str, TargetRecord] = field(default_factory=dict)
    posts: list[CallContext] = field(default_factory=list)
    lookups: int = 0

    async def post_invoice(self, invoice: Invoice, *, ctx: CallContext) -> TargetRecord:
        self.posts.append(ctx)
        if self.failures:
            error = self.failures.pop(0)
            if self.commit_before_fail:
                self._store(invoice.invoice_id)
            raise error
        return self._store(invoice.invoice_id)

    async def find_invoice(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        self.lookups += 1
        return self.records.get(external_id)

    async def aclose(self) -> None:
        return None

    def _store(self, external_id: str) -> TargetRecord:
        record = self.records.setdefault(
            external_id,
            TargetRecord(System.ERP, "invoice", str(len(self.records) + 1), external_id, 204),
        )
        return record
