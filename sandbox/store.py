"""One SQLite record store per simulated system: a file when given a path, memory otherwise.

Records are JSON documents keyed by (type, id) with an optional external ID. The store also
keeps what the ground-truth ledger needs: how many create calls named each external ID,
which idempotency key created what, and which records were silently dropped (drift).
Calls are synchronous and short; callers serialise them with the system's asyncio.Lock.
"""

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    external_id TEXT,
    period TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    body TEXT NOT NULL,
    meta TEXT NOT NULL,
    UNIQUE (type, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS records_external_id ON records (type, external_id)
    WHERE external_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_period ON records (type, period);
CREATE TABLE IF NOT EXISTS idempotency (
    type TEXT NOT NULL, key TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (type, key)
);
CREATE TABLE IF NOT EXISTS create_calls (
    type TEXT NOT NULL, external_id TEXT NOT NULL, calls INTEGER NOT NULL,
    PRIMARY KEY (type, external_id)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dropped (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, id TEXT NOT NULL,
    external_id TEXT, at TEXT NOT NULL, body TEXT NOT NULL
);
"""


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Stored:
    type: str
    id: str
    external_id: str | None
    period: str | None
    created_at: datetime
    updated_at: datetime
    body: dict[str, Any]
    # Who created it (idempotency key, correlation ID, traceparent) and any drift applied.
    meta: dict[str, Any]


def _row(row: sqlite3.Row) -> Stored:
    return Stored(
        type=row["type"],
        id=row["id"],
        external_id=row["external_id"],
        period=row["period"],
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        body=json.loads(row["body"]),
        meta=json.loads(row["meta"]),
    )


class RecordStore:
    def __init__(self, path: Path | None = None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: every statement is durable when it returns, so a restart loses nothing
        # that was answered. check_same_thread=False because uvicorn may run us off-thread.
        self._db = sqlite3.connect(
            str(path) if path else ":memory:", isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def next_number(self, name: str, *, start: int = 1) -> int:
        row = self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
            (name, start),
        ).fetchone()
        return int(row[0])

    def get(self, type_: str, id_: str) -> Stored | None:
        row = self._db.execute(
            "SELECT * FROM records WHERE type = ? AND id = ?", (type_, id_)
        ).fetchone()
        return _row(row) if row else None

    def find(self, type_: str, external_id: str) -> Stored | None:
        row = self._db.execute(
            "SELECT * FROM records WHERE type = ? AND external_id = ?", (type_, external_id)
        ).fetchone()
        return _row(row) if row else None

    def by_key(self, type_: str, key: str) -> Stored | None:
        row = self._db.execute(
            "SELECT r.* FROM idempotency i JOIN records r ON r.type = i.type AND r.id = i.id "
            "WHERE i.type = ? AND i.key = ?",
            (type_, key),
        ).fetchone()
        return _row(row) if row else None

    def key_used(self, type_: str, key: str) -> str | None:
        """The record id an idempotency key created (even if that record was dropped)."""
        row = self._db.execute(
            "SELECT id FROM idempotency WHERE type = ? AND key = ?", (type_, key)
        ).fetchone()
        return str(row[0]) if row else None

    def remember_key(self, type_: str, key: str, id_: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO idempotency (type, key, id) VALUES (?, ?, ?)", (type_, key, id_)
        )

    def count_create(self, type_: str, external_id: str) -> None:
        self._db.execute(
            "INSERT INTO create_calls (type, external_id, calls) VALUES (?, ?, 1) "
            "ON CONFLICT (type, external_id) DO UPDATE SET calls = calls + 1",
            (type_, external_id),
        )

    def create_calls(self) -> dict[tuple[str, str], int]:
        rows = self._db.execute("SELECT type, external_id, calls FROM create_calls")
        return {(r[0], r[1]): int(r[2]) for r in rows}

    def insert(
        self,
        type_: str,
        id_: str,
        *,
        external_id: str | None,
        body: dict[str, Any],
        meta: dict[str, Any],
        period: str | None = None,
        created_at: datetime | None = None,
    ) -> Stored:
        now = iso(created_at or utc_now())
        self._db.execute(
            "INSERT INTO records (type, id, external_id, period, created_at, updated_at, body, meta)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (type_, id_, external_id, period, now, now, json.dumps(body), json.dumps(meta)),
        )
        stored = self.get(type_, id_)
        assert stored is not None
        return stored

    def update(
        self,
        type_: str,
        id_: str,
        *,
        body: dict[str, Any],
        period: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Stored:
        current = self.get(type_, id_)
        if current is None:
            raise KeyError((type_, id_))
        self._db.execute(
            "UPDATE records SET body = ?, period = ?, meta = ?, updated_at = ? "
            "WHERE type = ? AND id = ?",
            (
                json.dumps(body),
                period if period is not None else current.period,
                json.dumps(meta if meta is not None else current.meta),
                iso(utc_now()),
                type_,
                id_,
            ),
        )
        updated = self.get(type_, id_)
        assert updated is not None
        return updated

    def select(
        self,
        type_: str | None = None,
        *,
        period: str | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[Stored]:
        clauses, params = [], []
        if type_ is not None:
            clauses.append("type = ?")
            params.append(type_)
        if period is not None:
            clauses.append("period = ?")
            params.append(period)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(
            f"SELECT * FROM records {where} ORDER BY seq LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [_row(r) for r in rows]

    def count(self, type_: str, *, period: str | None = None) -> int:
        if period is None:
            row = self._db.execute("SELECT count(*) FROM records WHERE type = ?", (type_,))
        else:
            row = self._db.execute(
                "SELECT count(*) FROM records WHERE type = ? AND period = ?", (type_, period)
            )
        return int(row.fetchone()[0])

    def record_dropped(
        self, type_: str, id_: str, *, external_id: str | None, body: dict[str, Any]
    ) -> None:
        self._db.execute(
            "INSERT INTO dropped (type, id, external_id, at, body) VALUES (?, ?, ?, ?, ?)",
            (type_, id_, external_id, iso(utc_now()), json.dumps(body)),
        )

    def dropped(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT type, id, external_id, at FROM dropped ORDER BY seq")
        return [{"type": r[0], "id": r[1], "external_id": r[2], "dropped_at": r[3]} for r in rows]
