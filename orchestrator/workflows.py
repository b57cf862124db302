"""Workflow definitions: which event starts what, and the steps each one takes."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import BaseModel

from lineage.enums import System
from orchestrator.client.canonical import Invoice, Workflow
from orchestrator.connectors.ports import CallContext, TargetRecord
from orchestrator.deps import WorkerDeps

Action = Callable[[WorkerDeps, BaseModel, CallContext], Awaitable[TargetRecord]]
Lookup = Callable[[WorkerDeps, str, CallContext], Awaitable[TargetRecord | None]]


@dataclass(frozen=True, slots=True)
class StepSpec:
    name: str
    target: System
    action: Action
    # Finds what an earlier, ambiguous attempt may already have created.
    lookup: Lookup
    external_id: Callable[[BaseModel], str]


@dataclass(frozen=True, slots=True)
class WorkflowSpec:
    name: Workflow
    input_model: type[BaseModel]
    steps: tuple[StepSpec, ...]
    sla_s: float


async def _post_invoice(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    assert isinstance(data, Invoice)
    return await deps.erp.post_invoice(data, ctx=ctx)


async def _find_invoice(
    deps: WorkerDeps, external_id: str, ctx: CallContext
) -> TargetRecord | None:
    return await deps.erp.find_invoice(external_id, ctx=ctx)


def _invoice_id(data: BaseModel) -> str:
    assert isinstance(data, Invoice)
    return data.invoice_id


INVOICE_GENERATED = WorkflowSpec(
    name=Workflow.INVOICE_GENERATED,
    input_model=Invoice,
    steps=(
        StepSpec(
            name="erp.post_invoice",
            target=System.ERP,
            action=_post_invoice,
            lookup=_find_invoice,
            external_id=_invoice_id,
        ),
    ),
    sla_s=300,
)

WORKFLOWS: dict[str, WorkflowSpec] = {spec.name.value: spec for spec in (INVOICE_GENERATED,)}
