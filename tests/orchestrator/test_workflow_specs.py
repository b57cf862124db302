"""A workflow definition that could not run as declared is refused when it is built."""

import pytest
from pydantic import BaseModel

from lineage.enums import System
from orchestrator.client.canonical import Workflow
from orchestrator.connectors.ports import CallContext, TargetRecord
from orchestrator.deps import WorkerDeps
from orchestrator.flows import WORKFLOWS
from orchestrator.workflows import StepSpec, WorkflowSpec


async def _act(_deps: WorkerDeps, _data: BaseModel, _ctx: CallContext) -> TargetRecord:
    raise AssertionError("never called")


def _step(name: str, **options: object) -> StepSpec:
    return StepSpec(name, System.ERP, _act, lambda _data: "x", **options)  # type: ignore[arg-type]


def _spec(*steps: StepSpec) -> WorkflowSpec:
    return WorkflowSpec(Workflow.SUBSCRIPTION_AMENDED, ("t",), BaseModel, steps, sla_s=60)


def test_a_step_may_use_what_it_depends_on_even_through_another_step() -> None:
    spec = _spec(
        _step("a"), _step("b", depends_on=("a",)), _step("c", depends_on=("b",), uses=("a",))
    )
    assert [s.name for s in spec.steps] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ((_step("b", depends_on=("a",)), _step("a")), "depends on undeclared"),
        ((_step("a"), _step("b", uses=("a",))), "uses {'a'} without depending on it"),
        (
            (_step("a"), _step("b", depends_on=("a",), uses=("a",), on_superseded=True)),
            "runs when superseded, so must what it uses",
        ),
    ],
)
def test_a_definition_that_cannot_run_as_declared_is_refused(
    steps: tuple[StepSpec, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _spec(*steps)


def test_the_amendment_posts_only_its_proration_when_superseded() -> None:
    spec = WORKFLOWS[Workflow.SUBSCRIPTION_AMENDED.value]
    assert [s.name for s in spec.steps if s.on_superseded] == [
        "erp.read_dimensions",
        "erp.post_proration",
    ]
