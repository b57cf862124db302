"""Snapshot sources: each reads one system for a period and answers contract tables.

A source answers the tables it can (see snapshots.TABLES); a run merges what its sources
answer. The engine only evaluates a kind when every table it needs was answered, so a system
nobody snapshotted never auto-resolves the mismatches found in it earlier.
"""

import re
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.enums import System
from lineage.models import BusinessTransaction, ExternalRef
from reconciliation.errors import InvalidPeriod
from reconciliation.snapshots import TABLES

# Years 1970-2999: a window must be a real, representable date range.
PERIOD_PATTERN = r"^(19[7-9]\d|2\d{3})-(0[1-9]|1[0-2])$"
_PERIOD = re.compile(PERIOD_PATTERN)
_ARROW_TYPES = {"VARCHAR": pa.string(), "BIGINT": pa.int64()}

# Snapshot tables by name, as Arrow tables with the contract's columns.
Snapshot = dict[str, Any]


class SnapshotSource(Protocol):
    """Reads one system for a period (and its neighbours, to match across month ends)."""

    name: str

    async def fetch(self, period: str) -> Snapshot: ...


def check_period(period: str) -> str:
    if not _PERIOD.match(period):
        raise InvalidPeriod(period)
    return period


def window(period: str) -> tuple[str, str, str]:
    """The month before, the month, and the month after: an invoice dated on the 31st may be
    booked on the 1st."""
    first = date.fromisoformat(f"{check_period(period)}-01")
    before = date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1)
    after = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return before.isoformat()[:7], period, after.isoformat()[:7]


def schema(table: str) -> Any:
    return pa.schema([(c, _ARROW_TYPES[t]) for c, t in TABLES[table].items()])


def from_rows(table: str, rows: Sequence[Sequence[Any]]) -> Any:
    """Rows in the contract's column order -> an Arrow table of that contract table."""
    columns: list[Sequence[Any]] = (
        list(zip(*rows, strict=True)) if rows else [() for _ in TABLES[table]]
    )
    return pa.Table.from_arrays(
        [pa.array(list(c), type=f.type) for c, f in zip(columns, schema(table), strict=True)],
        schema=schema(table),
    )


class LineageSource:
    """What Concord believes it posted: invoice transactions and the ERP records they hold."""

    name = "lineage"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        invoice_workflows: Sequence[str] = ("invoice_generated",),
    ) -> None:
        self._sessionmaker = sessionmaker
        self._workflows = tuple(invoice_workflows)

    async def fetch(self, period: str) -> Snapshot:
        tx, ref = BusinessTransaction, ExternalRef
        query = (
            select(
                tx.correlation_id,
                tx.invoice_id,
                ref.external_id,
                tx.amount_minor,
                tx.currency,
                tx.state,
                tx.period,
            )
            .outerjoin(
                ref,
                and_(
                    ref.correlation_id == tx.correlation_id,
                    ref.system == System.ERP,
                    ref.object_type == "invoice",
                ),
            )
            .where(
                tx.invoice_id.is_not(None),
                tx.workflow.in_(self._workflows),
                tx.period.in_(window(period)),
            )
            .order_by(tx.correlation_id)
        )
        async with self._sessionmaker() as session:
            rows = (await session.execute(query)).all()
        plain = [(*r[:5], str(r[5]), r[6]) for r in rows]
        return {"lineage_postings": from_rows("lineage_postings", plain)}


class ParquetDirectorySource:
    """Snapshots someone already took: <dir>/<table>.parquet, e.g. an earlier run's directory."""

    name = "files"

    def __init__(self, directory: Path, *, tables: Sequence[str] | None = None) -> None:
        self._directory = directory
        self._tables = tables

    async def fetch(self, period: str) -> Snapshot:
        check_period(period)
        wanted = self._tables or [p.stem for p in sorted(self._directory.glob("*.parquet"))]
        return {t: pq.read_table(self._directory / f"{t}.parquet") for t in wanted}
