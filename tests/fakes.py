"""In-repo fakes of the outside systems, with scripted failures, for the engine's own paths.

Each keeps what it holds by external ID, so a repeated call is visible as a repeat, not a copy.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.enums import System
from orchestrator.client.canonical import Invoice, Payment, Subscription
from orchestrator.client.usage import UsageSummary
from orchestrator.connectors.errors import Terminal
from orchestrator.connectors.hubspot import CrmObject
from orchestrator.connectors.ports import (
    CallContext,
    CustomerDimensions,
    JournalEntryRecord,
    TargetRecord,
)
from orchestrator.deps import WorkerDeps
from orchestrator.erp_keys import contract_external_id, ended_external_id
from orchestrator.mappings import Mappings, load_mappings
from orchestrator.ratelimit import TokenBucket
from orchestrator.settings import OrchestratorSettings


class WorkerKilled(BaseException):
    """Stands for the worker process being killed at the point it is raised: no handler of the
    engine catches it, so the attempt is left unfinished, as a SIGKILL leaves it."""


@dataclass
class FakeSystem:
    """Records by (object type, external ID); `fail[op]` errors are raised in order first."""

    system: System
    # Besides connector errors, WorkerKilled (the worker killed mid-call) or
    # asyncio.CancelledError (the job cancelled mid-call, as arq's job timeout does).
    fail: dict[str, list[BaseException]] = field(default_factory=lambda: defaultdict(list))
    commit_before_fail: bool = False
    records: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, CallContext]] = field(default_factory=list)
    lookups: int = 0

    def _do(
        self, op: str, object_type: str, external_id: str, ctx: CallContext, **values: Any
    ) -> TargetRecord:
        self.calls.append((op, ctx))
        key = (object_type, external_id)
        if self.fail.get(op):
            error = self.fail[op].pop(0)
            if self.commit_before_fail:
                self._store(key, values)
            raise error
        return self._record(key, self._store(key, values))

    def _store(self, key: tuple[str, str], values: dict[str, Any]) -> dict[str, Any]:
        record = self.records.setdefault(key, {"id": str(len(self.records) + 1)})
        record.update(values)
        return record

    def _record(self, key: tuple[str, str], record: dict[str, Any]) -> TargetRecord:
        return TargetRecord(self.system, key[0], record["id"], key[1], 200)

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]

    async def aclose(self) -> None:
        return None


class ScriptedErp(FakeSystem):
    def __init__(
        self, failures: list[BaseException] | None = None, commit_before_fail: bool = False
    ) -> None:
        super().__init__(System.ERP, commit_before_fail=commit_before_fail)
        self.fail["post_invoice"] = list(failures or [])
        # Each contract version by its external ID, as the ERP's revenue plans are kept.
        self.contract_versions: dict[str, TargetRecord] = {}

    @property
    def posts(self) -> list[CallContext]:
        return [ctx for op, ctx in self.calls if op == "post_invoice"]

    async def post_invoice(self, invoice: Invoice, *, ctx: CallContext) -> TargetRecord:
        return self._do(
            "post_invoice", "invoice", invoice.invoice_id, ctx, amount=invoice.amount_minor
        )

    async def find_invoice(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        self.lookups += 1
        record = self.records.get(("invoice", external_id))
        return self._record(("invoice", external_id), record) if record else None

    async def upsert_customer(
        self, *, customer_id: str, currency: str, ctx: CallContext
    ) -> TargetRecord:
        return self._do("upsert_customer", "customer", customer_id, ctx, currency=currency)

    async def upsert_contract(
        self, *, subscription: Subscription, ctx: CallContext
    ) -> TargetRecord:
        record = self._do(
            "upsert_contract",
            "contract",
            subscription.subscription_id,
            ctx,
            value=subscription.contract_value_minor,
            ended=False,
        )
        self.contract_versions[contract_external_id(subscription)] = record
        return record

    async def end_contract(self, *, subscription: Subscription, ctx: CallContext) -> TargetRecord:
        record = self._do("end_contract", "contract", subscription.subscription_id, ctx, ended=True)
        self.contract_versions[ended_external_id(subscription)] = record
        return record

    async def find_contract(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        self.lookups += 1
        return self.contract_versions.get(external_id)

    async def find_payment(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        self.lookups += 1
        invoice_id = external_id.removeprefix("payment:")
        record = self.records.get(("payment", invoice_id))
        return self._record(("payment", invoice_id), record) if record else None

    async def apply_payment(self, *, payment: Payment, ctx: CallContext) -> TargetRecord:
        if ("invoice", payment.invoice_id) not in self.records:
            raise Terminal(f"invoice {payment.invoice_id} is not in the ERP", http_status=400)
        return self._do(
            "apply_payment", "payment", payment.invoice_id, ctx, amount=payment.amount_minor
        )

    async def post_usage_summary(self, summary: UsageSummary, *, ctx: CallContext) -> TargetRecord:
        return self._do(
            "post_usage_summary",
            "journalentry",
            summary.external_id,
            ctx,
            amount=summary.amount_minor,
            quantities={line.metric: line.quantity for line in summary.lines},
        )

    async def find_usage_summary(
        self, external_id: str, *, ctx: CallContext
    ) -> TargetRecord | None:
        return await self.find_journal(external_id, ctx=ctx)

    async def customer_dimensions(
        self, customer_id: str, *, ctx: CallContext
    ) -> CustomerDimensions | None:
        self.calls.append(("customer_dimensions", ctx))
        record = self.records.get(("customer", customer_id))
        if record is None:
            return None
        return CustomerDimensions(record["id"], record.get("subsidiary"), record.get("currency"))

    async def post_journal(self, entry: JournalEntryRecord, *, ctx: CallContext) -> TargetRecord:
        return self._do(
            "post_journal",
            "journalentry",
            entry.external_id,
            ctx,
            lines=entry.lines,
            subsidiary=entry.subsidiary,
        )

    async def find_journal(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        self.lookups += 1
        record = self.records.get(("journalentry", external_id))
        return self._record(("journalentry", external_id), record) if record else None

    async def aclose(self) -> None:
        return None


class FakeCrm(FakeSystem):
    """Besides what Concord writes, `objects` holds what people entered: deals, companies, ..."""

    def __init__(self) -> None:
        super().__init__(System.CRM)
        self.objects: dict[tuple[str, str], CrmObject] = {}

    async def read(
        self,
        object_type: str,
        object_id: str,
        *,
        associations: Sequence[str] = (),
        ctx: CallContext,
    ) -> CrmObject | None:
        self.calls.append(("read", ctx))
        return self.objects.get((object_type, object_id))

    async def account(self, *, customer_id: str, ctx: CallContext) -> CrmObject | None:
        self.calls.append(("account", ctx))
        record = self.records.get(("company", customer_id))
        if record is None:
            return None
        return CrmObject("companies", record["id"], {"name": customer_id})

    async def upsert_account(self, *, customer_id: str, ctx: CallContext) -> TargetRecord:
        return self._do("upsert_account", "company", customer_id, ctx)

    async def upsert_contract(
        self, *, subscription: Subscription, value_minor: int, ctx: CallContext
    ) -> TargetRecord:
        return self._do(
            "upsert_contract", "deal", subscription.subscription_id, ctx, amount=value_minor
        )

    async def create_task(
        self, *, external_id: str, subject: str, body: str, due: datetime | None, ctx: CallContext
    ) -> TargetRecord:
        return self._do(
            "create_task", "task", external_id, ctx, subject=subject, body=body, due=due
        )

    async def find_task(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        self.lookups += 1
        record = self.records.get(("task", external_id))
        return self._record(("task", external_id), record) if record else None


class FakeBilling(FakeSystem):
    def __init__(self) -> None:
        super().__init__(System.BILLING)

    async def ensure_customer(
        self, *, external_id: str, name: str, email: str | None, ctx: CallContext
    ) -> TargetRecord:
        return self._do("ensure_customer", "customer", external_id, ctx, name=name)

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
        if ("customer", customer_external_id) not in self.records:
            raise Terminal(f"billing has no customer with external ID {customer_external_id}")
        return self._do(
            "create_subscription",
            "subscription",
            external_id,
            ctx,
            customer=customer_external_id,
            plans=list(plans),
            metadata=metadata,
            days_until_due=days_until_due,
        )

    async def find_subscription(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        self.lookups += 1
        record = self.records.get(("subscription", external_id))
        return self._record(("subscription", external_id), record) if record else None

    async def flag_subscription(
        self, *, subscription_id: str, metadata: dict[str, str], ctx: CallContext
    ) -> TargetRecord:
        return self._do("flag_subscription", "subscription", subscription_id, ctx, **metadata)


class FakeProvisioning(FakeSystem):
    def __init__(self) -> None:
        super().__init__(System.PROVISIONING)

    async def set_tenant(
        self, *, subscription: Subscription, enabled: bool, ctx: CallContext
    ) -> TargetRecord:
        return self._do("set_tenant", "tenant", subscription.subscription_id, ctx, enabled=enabled)


class FakeSupport(FakeSystem):
    def __init__(self) -> None:
        super().__init__(System.SUPPORT)

    async def open_ticket(
        self, *, external_id: str, customer_id: str, subject: str, body: str, ctx: CallContext
    ) -> TargetRecord:
        return self._do("open_ticket", "ticket", external_id, ctx, subject=subject)

    async def find_ticket(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        self.lookups += 1
        record = self.records.get(("ticket", external_id))
        return self._record(("ticket", external_id), record) if record else None


class FakeAnalytics(FakeSystem):
    """Keyed by messageId (the idempotency key), as Segment dedupes: a retry is not a copy."""

    def __init__(self) -> None:
        super().__init__(System.ANALYTICS)

    async def track(
        self,
        *,
        user_id: str,
        event: str,
        properties: dict[str, object],
        timestamp: datetime | None,
        external_id: str,
        ctx: CallContext,
    ) -> TargetRecord:
        self._do(
            "track",
            "track",
            ctx.idempotency_key,
            ctx,
            user_id=user_id,
            event=event,
            properties=properties,
            timestamp=timestamp,
            names=external_id,
        )
        return TargetRecord(self.system, "track", ctx.idempotency_key, external_id, 200)


@dataclass
class Fakes:
    erp: ScriptedErp = field(default_factory=ScriptedErp)
    crm: FakeCrm = field(default_factory=FakeCrm)
    billing: FakeBilling = field(default_factory=FakeBilling)
    provisioning: FakeProvisioning = field(default_factory=FakeProvisioning)
    support: FakeSupport = field(default_factory=FakeSupport)
    analytics: FakeAnalytics = field(default_factory=FakeAnalytics)


def fake_deps(
    settings: OrchestratorSettings,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: ArqRedis,
    fakes: Fakes,
    mappings: Mappings | None = None,
) -> WorkerDeps:

    return WorkerDeps(
        settings=settings,
        sessionmaker=sessionmaker,
        redis=redis,
        erp=fakes.erp,
        crm=fakes.crm,
        billing=fakes.billing,
        provisioning=fakes.provisioning,
        support=fakes.support,
        analytics=fakes.analytics,
        limiter=TokenBucket(redis, limits={}),
        mappings=mappings or load_mappings(),
    )
