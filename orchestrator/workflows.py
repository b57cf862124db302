"""The shape of a workflow definition; orchestrator.flows declares the workflows themselves."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pydantic import BaseModel

from lineage.enums import System
from orchestrator.client.canonical import Workflow
from orchestrator.connectors.ports import CallContext, TargetRecord
from orchestrator.deps import WorkerDeps

Action = Callable[[WorkerDeps, BaseModel, CallContext], Awaitable[TargetRecord]]
Lookup = Callable[[WorkerDeps, str, CallContext], Awaitable[TargetRecord | None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """None falls back to the worker's settings."""

    max_attempts: int | None = None
    base_s: float | None = None
    cap_s: float | None = None
    # Wall time from a step's first attempt after which it stops retrying.
    budget_s: float = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class StepSpec:
    name: str
    target: System
    action: Action
    external_id: Callable[[BaseModel], str]
    # Finds what an earlier, ambiguous attempt may already have created; None for upserts,
    # which are safe to repeat.
    lookup: Lookup | None = None
    depends_on: tuple[str, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Undoes this step's effect when a later step fails terminally.
    compensate: Action | None = None
    # For an admin's forced re-posting: the input with the external ID given a suffix, so the
    # target creates a second record on purpose. None: the step cannot post a copy (upserts).
    fork: Callable[[BaseModel, str], BaseModel] | None = None
    # Earlier steps whose output this step reads (ctx.earlier); each must be a dependency.
    uses: tuple[str, ...] = ()
    # False: when this step fails terminally, the earlier steps' effects stand (a missing
    # analytics event does not undo a contract change); a replay from this step finishes it.
    undo_on_failure: bool = True
    # True: runs even when a later state of the subscription has already posted. A delta (a
    # proration) is a fact of its own that no later state contains; a state (a contract
    # value) would roll the targets back, so only flagged steps run then.
    on_superseded: bool = False


class StepSkipped(Exception):
    """Raised by an action that finds nothing to do (a proration of zero): the step is done,
    recorded as skipped with the reason, and nothing is posted."""


@dataclass(frozen=True, slots=True)
class WorkflowSpec:
    name: Workflow
    triggers: tuple[str, ...]
    input_model: type[BaseModel]
    steps: tuple[StepSpec, ...]
    sla_s: float
    # Workflows that must have posted on the same ordering key before this one may run.
    requires: tuple[Workflow, ...] = ()
    # Workflows whose input replaces this one's (a whole subscription's state): once one of
    # them has posted a later event on the same key, this event arriving late is superseded.
    superseded_by: tuple[Workflow, ...] = ()

    def __post_init__(self) -> None:
        # Each step's transitive dependencies: a step may only use what has run before it.
        before: dict[str, set[str]] = {}
        for step in self.steps:
            unknown = set(step.depends_on) - before.keys()
            if unknown:
                raise ValueError(f"{self.name}.{step.name} depends on undeclared {unknown}")
            before[step.name] = set(step.depends_on).union(*(before[d] for d in step.depends_on))
            unordered = set(step.uses) - before[step.name]
            if unordered:
                raise ValueError(
                    f"{self.name}.{step.name} uses {unordered} without depending on it"
                )
        # When superseded, only flagged steps run: what they use must run too; an ordering
        # dependency on a step that does not run is waived.
        flagged = {step.name for step in self.steps if step.on_superseded}
        for step in self.steps:
            if step.on_superseded and not set(step.uses) <= flagged:
                raise ValueError(
                    f"{self.name}.{step.name} runs when superseded, so must what it uses"
                )
