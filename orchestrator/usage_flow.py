"""The usage summary workflow: one ERP posting per subscription, period and currency."""

from pydantic import BaseModel

from lineage.enums import System
from orchestrator.client.canonical import Workflow
from orchestrator.client.catalog import SLA_S
from orchestrator.client.usage import UsageSummary
from orchestrator.connectors.ports import CallContext, TargetRecord
from orchestrator.deps import WorkerDeps
from orchestrator.usage import ADJUSTED, SUMMARISED
from orchestrator.workflows import StepSpec, WorkflowSpec


def _summary(data: BaseModel) -> UsageSummary:
    assert isinstance(data, UsageSummary)
    return data


def _external_id(data: BaseModel) -> str:
    return _summary(data).external_id


async def _post(deps: WorkerDeps, data: BaseModel, ctx: CallContext) -> TargetRecord:
    return await deps.erp.post_usage_summary(_summary(data), ctx=ctx)


async def _find(deps: WorkerDeps, external_id: str, ctx: CallContext) -> TargetRecord | None:
    return await deps.erp.find_usage_summary(external_id, ctx=ctx)


# No fork: a summary's external ID names the usage it counts, so a forced second copy would
# book the same usage twice; late usage gets its own adjustment instead.
USAGE_SUMMARY = WorkflowSpec(
    name=Workflow.USAGE_SUMMARY,
    triggers=(SUMMARISED, ADJUSTED),
    input_model=UsageSummary,
    steps=(StepSpec("erp.post_usage_summary", System.ERP, _post, _external_id, lookup=_find),),
    sla_s=SLA_S[Workflow.USAGE_SUMMARY],
)
