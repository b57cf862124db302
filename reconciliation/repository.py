"""Runs and mismatches in the lineage database. Flushes, never commits (the caller does)."""

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lineage.errors import InvalidCursor
from lineage.models import Mismatch, ReconciliationRun
from reconciliation.errors import (
    MismatchNotFound,
    MismatchNotLinked,
    MismatchNotOpen,
    RunInProgress,
    RunNotFound,
)
from reconciliation.states import MismatchStatus, RunState

_CHUNK = 500
# A resolved mismatch found again stays resolved unless one of these changed since.
_VALUES = (
    "source_amount_minor",
    "source_currency",
    "source_status",
    "target_id",
    "target_amount_minor",
    "target_currency",
    "target_status",
    "amount_at_risk_minor",
)
_COPIED = (
    "kind",
    "period",
    "system",
    "match_key",
    "source_system",
    "source_id",
    *_VALUES,
    "target_system",
    "currency",
    "correlation_ids",
    "refs",
)


@dataclass(frozen=True, slots=True)
class Applied:
    found: int
    new: int
    reopened: int
    auto_resolved: int


async def start_run(
    session: AsyncSession,
    *,
    period: str,
    trigger: str,
    requested_by: str | None,
    tolerance_minor: int,
    now: datetime,
    stale_after: timedelta = timedelta(minutes=2),
) -> ReconciliationRun:
    """A new running run of `period`; RunInProgress while another is. A running run whose
    heartbeat is older than `stale_after` is taken as abandoned (its process died before it
    could record how it ended) and marked failed, so the period is not blocked for good."""
    running = await session.scalar(
        select(ReconciliationRun).where(
            ReconciliationRun.period == period, ReconciliationRun.state == RunState.RUNNING
        )
    )
    if running is not None:
        last_beat = running.heartbeat_at or running.started_at
        if last_beat > now - stale_after:
            raise RunInProgress(period, running.id)
        running.state, running.finished_at = RunState.FAILED, now
        running.error = (
            f"abandoned: no heartbeat since {last_beat.isoformat()}; the process running it "
            "stopped before it could record how it ended"
        )
        await session.flush()
    run = ReconciliationRun(
        period=period,
        state=RunState.RUNNING,
        stage="queued",
        progress=0,
        trigger=trigger,
        requested_by=requested_by,
        tolerance_minor=tolerance_minor,
        found_count=0,
        new_count=0,
        auto_resolved_count=0,
        started_at=now,
        heartbeat_at=now,
    )
    session.add(run)
    await session.flush()
    return run


async def beat(session: AsyncSession, run_id: int, *, now: datetime) -> None:
    """The run is still working (nothing if it has already ended)."""
    await session.execute(
        update(ReconciliationRun)
        .where(ReconciliationRun.id == run_id, ReconciliationRun.state == RunState.RUNNING)
        .values(heartbeat_at=now)
    )


async def get_run(session: AsyncSession, run_id: int) -> ReconciliationRun:
    run = await session.get(ReconciliationRun, run_id)
    if run is None:
        raise RunNotFound(run_id)
    return run


async def _existing(session: AsyncSession, fingerprints: Sequence[str]) -> dict[str, Mismatch]:
    found: dict[str, Mismatch] = {}
    for start in range(0, len(fingerprints), _CHUNK):
        chunk = fingerprints[start : start + _CHUNK]
        rows = await session.scalars(select(Mismatch).where(Mismatch.fingerprint.in_(chunk)))
        found.update((m.fingerprint, m) for m in rows)
    return found


def _update(mismatch: Mismatch, finding: dict[str, Any], run_id: int, now: datetime) -> bool:
    """Refresh a mismatch from a finding; True if it was reopened."""
    changed = any(getattr(mismatch, k) != finding[k] for k in _VALUES)
    for key in _COPIED:
        setattr(mismatch, key, finding[key])
    mismatch.correlation_id = (finding["correlation_ids"] or [None])[0]
    mismatch.last_run_id = run_id
    mismatch.last_seen_at = now
    reopen = mismatch.status == MismatchStatus.AUTO_RESOLVED or (
        mismatch.status == MismatchStatus.RESOLVED and changed
    )
    if reopen:
        mismatch.status = MismatchStatus.OPEN
        mismatch.resolved_at = None
        mismatch.resolved_by = None
        mismatch.resolution_note = None
        mismatch.resolved_run_id = None
    return reopen


async def apply_findings(
    session: AsyncSession,
    *,
    run: ReconciliationRun,
    findings: list[dict[str, Any]],
    kinds_evaluated: Iterable[str],
    now: datetime,
) -> Applied:
    """Record what a run found: the same fingerprint is the same mismatch, found again.

    Open mismatches of the run's period that it could have found (their kind was evaluated)
    and did not are auto-resolved by it.
    """
    by_fingerprint = {f["fingerprint"]: f for f in findings}
    existing = await _existing(session, list(by_fingerprint))
    new = reopened = 0
    for fingerprint, finding in by_fingerprint.items():
        mismatch = existing.get(fingerprint)
        if mismatch is not None:
            reopened += _update(mismatch, finding, run.id, now)
            continue
        new += 1
        session.add(
            Mismatch(
                fingerprint=fingerprint,
                status=MismatchStatus.OPEN,
                correlation_id=(finding["correlation_ids"] or [None])[0],
                first_run_id=run.id,
                last_run_id=run.id,
                first_seen_at=now,
                last_seen_at=now,
                **{k: finding[k] for k in _COPIED},
            )
        )
    stale = await session.scalars(
        select(Mismatch).where(
            Mismatch.period == run.period,
            Mismatch.status == MismatchStatus.OPEN,
            Mismatch.kind.in_(list(kinds_evaluated)),
        )
    )
    auto_resolved = 0
    for mismatch in stale:
        if mismatch.fingerprint in by_fingerprint:
            continue
        mismatch.status = MismatchStatus.AUTO_RESOLVED
        mismatch.resolved_at = now
        mismatch.resolved_run_id = run.id
        auto_resolved += 1
    await session.flush()
    return Applied(len(by_fingerprint), new, reopened, auto_resolved)


async def resolve(
    session: AsyncSession, mismatch_id: int, *, by: str, note: str, now: datetime
) -> Mismatch:
    mismatch = await session.get(Mismatch, mismatch_id, with_for_update=True)
    if mismatch is None:
        raise MismatchNotFound(mismatch_id)
    if mismatch.status != MismatchStatus.OPEN:
        raise MismatchNotOpen(mismatch_id, mismatch.status)
    mismatch.status = MismatchStatus.RESOLVED
    mismatch.resolved_at = now
    mismatch.resolved_by = by
    mismatch.resolution_note = note
    await session.flush()
    return mismatch


async def open_for_replay(session: AsyncSession, mismatch_id: int) -> Mismatch:
    """The open mismatch, locked, with the transactions a replay would start from."""
    mismatch = await session.get(Mismatch, mismatch_id, with_for_update=True)
    if mismatch is None:
        raise MismatchNotFound(mismatch_id)
    if mismatch.status != MismatchStatus.OPEN:
        raise MismatchNotOpen(mismatch_id, mismatch.status)
    if not mismatch.correlation_ids:
        raise MismatchNotLinked(mismatch_id)
    return mismatch


def record_replay(
    mismatch: Mismatch, *, by: str, runs: list[dict[str, Any]], now: datetime
) -> None:
    mismatch.last_replay_at = now
    mismatch.last_replay_by = by
    mismatch.last_replay_runs = runs


@dataclass(frozen=True, slots=True)
class MismatchFilter:
    kind: str | None = None
    status: str | None = None
    period: str | None = None
    system: str | None = None
    min_amount_minor: int | None = None
    max_amount_minor: int | None = None
    currency: str | None = None
    run_id: int | None = None


def _conditions(flt: MismatchFilter) -> list[ColumnElement[bool]]:
    conditions = [
        (flt.kind, Mismatch.kind == flt.kind),
        (flt.status, Mismatch.status == flt.status),
        (flt.period, Mismatch.period == flt.period),
        (flt.system, Mismatch.system == flt.system),
        (flt.currency, Mismatch.currency == (flt.currency or "").upper()),
        (flt.min_amount_minor, Mismatch.amount_at_risk_minor >= (flt.min_amount_minor or 0)),
        (flt.max_amount_minor, Mismatch.amount_at_risk_minor <= (flt.max_amount_minor or 0)),
        (flt.run_id, Mismatch.last_run_id == flt.run_id),
    ]
    return [c for value, c in conditions if value is not None]


def encode_cursor(mismatch_id: int) -> str:
    return base64.urlsafe_b64encode(f"mm:{mismatch_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "mm":
            raise ValueError(raw)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor() from exc


async def list_mismatches(
    session: AsyncSession, flt: MismatchFilter, *, limit: int | None, cursor: str | None = None
) -> tuple[list[Mismatch], str | None]:
    """Largest id first (newest); limit None returns every match (the CSV export)."""
    query = select(Mismatch).where(*_conditions(flt)).order_by(Mismatch.id.desc())
    if cursor:
        query = query.where(Mismatch.id < decode_cursor(cursor))
    if limit is None:
        return list(await session.scalars(query)), None
    rows = list(await session.scalars(query.limit(limit + 1)))
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1].id)
    return rows, None


async def totals(session: AsyncSession, flt: MismatchFilter) -> list[tuple[str | None, int, int]]:
    """(currency, count, amount at risk) of every mismatch the filter matches, by currency."""
    query = (
        select(
            Mismatch.currency,
            func.count(),
            func.coalesce(func.sum(Mismatch.amount_at_risk_minor), 0),
        )
        .where(*_conditions(flt))
        .group_by(Mismatch.currency)
    )
    rows = await session.execute(query.order_by(Mismatch.currency))
    return [(currency, int(count), int(amount)) for currency, count, amount in rows]
