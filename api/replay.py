"""Single replays and manual resolutions: the checks and the audit around lineage.actions."""

from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api import audit_trail
from api.errors import ApiError
from api.jsondiff import diff
from api.schemas_actions import (
    DiffOp,
    HeldRecordRead,
    ReplayCreate,
    ReplayRead,
    ResolveCreate,
    ResolveRead,
)
from lineage import actions, queries
from lineage.apikeys import Principal
from lineage.clock import utc_now
from lineage.enums import ExceptionStatus, Role, TxState
from lineage.errors import NotReplayable
from lineage.models import ExceptionItem, WorkflowStep
from orchestrator.client.catalog import IDENTITY_FIELDS, WORKFLOW_INPUTS

CANONICAL_MODELS: dict[str, type[BaseModel]] = {w.value: m for w, m in WORKFLOW_INPUTS.items()}
_IDENTITY: dict[str, tuple[str, ...]] = {w.value: f for w, f in IDENTITY_FIELDS.items()}


def _at(document: dict[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _check_force(replay_in: ReplayCreate, principal: Principal) -> None:
    if not replay_in.force_new_posting:
        return
    if principal.role is not Role.ADMIN:
        raise ApiError(403, "forbidden", "force_new_posting is for admins only")


async def _check_from_step(session: AsyncSession, correlation_id: str, step: str | None) -> None:
    if step is None:
        return
    known = set(
        await session.scalars(
            select(WorkflowStep.name).where(WorkflowStep.correlation_id == correlation_id)
        )
    )
    if step not in known:
        raise ApiError(
            422,
            "unknown_step",
            f"from_step {step!r} is not a step this transaction has run",
            details={"known_steps": sorted(known)},
        )


def _edited_input(
    workflow: str, original: dict[str, Any] | None, payload: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    model = CANONICAL_MODELS.get(workflow)
    if model is None:
        raise ApiError(422, "payload_not_supported", f"workflow {workflow} takes no edited payload")
    try:
        edited = model.model_validate(payload).model_dump(mode="json")
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise ApiError(
            422,
            "invalid_payload",
            f"the payload is not a valid {model.__name__}",
            details={"errors": errors},
        ) from exc
    before = original or {}
    changed = [f for f in _IDENTITY.get(workflow, ()) if _at(edited, f) != _at(before, f)]
    if changed:
        raise ApiError(
            422,
            "identity_change",
            "the edit changes the record's identity, so the target would get a second record",
            details={"fields": changed},
        )
    return edited, diff(before, edited)


async def replay_one(
    session: AsyncSession, correlation_id: str, replay_in: ReplayCreate, *, principal: Principal
) -> ReplayRead:
    _check_force(replay_in, principal)
    tx = await queries.get_transaction(session, correlation_id)
    if tx.workflow is None:
        raise NotReplayable(correlation_id, "its event started no workflow")
    await _check_from_step(session, correlation_id, replay_in.from_step)
    override: dict[str, Any] | None = None
    changes: list[dict[str, Any]] = []
    if replay_in.payload is not None:
        override, changes = _edited_input(tx.workflow, tx.canonical, replay_in.payload)
    held = (await queries.target_holdings(session, [correlation_id]))[correlation_id]
    before = tx.state.value
    run = await actions.start_replay(
        session,
        correlation_id,
        requested_by=principal.name,
        reason=replay_in.reason,
        now=utc_now(),
        from_step=replay_in.from_step,
        input_override=override,
        force_new_posting=replay_in.force_new_posting,
    )
    await audit_trail.record_success(
        session,
        principal,
        action="transaction.replay",
        target=correlation_id,
        reason=replay_in.reason,
        before={"state": before},
        after={"state": TxState.PENDING.value, "run": run.number},
        detail={
            "from_step": replay_in.from_step,
            "payload_diff": changes,
            "target_holds_record": bool(held),
        },
    )
    return ReplayRead(
        correlation_id=correlation_id,
        run_number=run.number,
        state=TxState.PENDING,
        from_step=replay_in.from_step,
        target_holds_record=bool(held),
        target_records=[HeldRecordRead.model_validate(r) for r in held],
        payload_edited=override is not None,
        payload_diff=[DiffOp.model_validate(op) for op in changes],
    )


async def resolve_one(
    session: AsyncSession, correlation_id: str, resolve_in: ResolveCreate, *, principal: Principal
) -> ResolveRead:
    tx = await queries.get_transaction(session, correlation_id)
    before = tx.state.value
    open_ids = list(
        await session.scalars(
            select(ExceptionItem.id).where(
                ExceptionItem.correlation_id == correlation_id,
                ExceptionItem.status == ExceptionStatus.OPEN,
            )
        )
    )
    now = utc_now()
    resolved = await actions.resolve_manually(
        session,
        correlation_id,
        actor=principal.name,
        resolution=resolve_in.resolution,
        note=resolve_in.note,
        now=now,
    )
    await audit_trail.record_success(
        session,
        principal,
        action="transaction.resolve",
        target=correlation_id,
        reason=resolve_in.note,
        before={"state": before},
        after={"state": resolved.state.value, "resolution": resolve_in.resolution},
        detail={"closed_exceptions": open_ids},
    )
    return ResolveRead(
        correlation_id=correlation_id,
        state=resolved.state,
        resolution=resolve_in.resolution,
        note=resolve_in.note,
        resolved_by=principal.name,
        resolved_at=now,
        closed_exceptions=open_ids,
    )
