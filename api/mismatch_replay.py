"""Replay from a mismatch: every transaction it links to, through the single-replay path.

Each transaction goes through api.replay.replay_one (the same checks, the same audit row per
transaction), all in the request's one database transaction: if one of them cannot be replayed
(busy, no workflow) none is, and the answer says why. The mismatch keeps when, by whom and
which runs; it stays open until a later reconciliation run no longer finds it.
"""

from sqlalchemy.ext.asyncio import AsyncSession

from api import audit_trail
from api.replay import replay_one
from api.schemas_actions import ReplayCreate, ReplayRead
from lineage.apikeys import Principal
from lineage.clock import utc_now
from lineage.models import Mismatch
from reconciliation import repository


async def replay_mismatch(
    session: AsyncSession, mismatch_id: int, *, reason: str, principal: Principal
) -> tuple[Mismatch, list[ReplayRead]]:
    mismatch = await repository.open_for_replay(session, mismatch_id)
    note = f"from mismatch {mismatch_id} ({mismatch.kind}): {reason}"
    replays = [
        await replay_one(session, cid, ReplayCreate(reason=note), principal=principal)
        for cid in mismatch.correlation_ids
    ]
    runs = [{"correlation_id": r.correlation_id, "run_number": r.run_number} for r in replays]
    repository.record_replay(mismatch, by=principal.name, runs=runs, now=utc_now())
    await audit_trail.record_success(
        session,
        principal,
        action="mismatch.replay",
        target=f"mismatch:{mismatch_id}",
        reason=reason,
        after={"runs": runs},
        detail={"kind": mismatch.kind, "amount_at_risk_minor": mismatch.amount_at_risk_minor},
    )
    await session.flush()
    return mismatch, replays
