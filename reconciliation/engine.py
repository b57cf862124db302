"""The reconciliation engine: snapshot tables in, findings out, all of it inside DuckDB.

Pure: no database of ours, no network, no clock. Each call opens its own in-memory DuckDB
connection (never the module-level default one, which `duckdb.sql()` shares process-wide),
binds its values with `?`, runs the files in reconciliation/sql/ in name order (the rule
files, one query per mismatch kind, together as one statement), and closes the connection.
Inputs are Arrow tables or Parquet files; nothing iterates rows in Python.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from reconciliation.snapshots import REQUIRES, TABLES, Kind

# An Arrow table (pyarrow.Table, or anything DuckDB can scan through the Arrow C interface)
# or the path of a Parquet file.
SnapshotInput = Any

_RULE_PREFIX_DIGITS = 3  # "14_amount_mismatch.sql" -> kind "amount_mismatch"


class SnapshotError(ValueError):
    """An input table is unknown, or lacks a column the contract requires."""


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Amount differences up to and including this many minor units are not mismatches."""

    default_minor: int = 0
    by_currency: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = [self.default_minor, *self.by_currency.values()]
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
            raise ValueError("tolerances are non-negative integers in minor units")


@dataclass(frozen=True, slots=True)
class Result:
    # pyarrow.Table with the columns of snapshots.FINDING_COLUMNS, ordered by kind, match_key.
    findings: Any
    # Kinds whose inputs were all supplied; only these may auto-resolve earlier findings.
    kinds_evaluated: frozenset[Kind]
    input_rows: dict[str, int]


def _sql(name: str) -> str:
    return resources.files("reconciliation").joinpath("sql", name).read_text(encoding="utf-8")


def _rule_files() -> list[tuple[Kind, str]]:
    names = sorted(
        entry.name
        for entry in resources.files("reconciliation").joinpath("sql").iterdir()
        if entry.name.endswith(".sql")
    )
    rules = []
    for name in names:
        stem = name.removesuffix(".sql")[_RULE_PREFIX_DIGITS:]
        if stem in Kind.__members__.values():
            rules.append((Kind(stem), name))
    return rules


def _findings_sql(rules: list[str]) -> str:
    # One statement for every rule: each INSERT alone costs more in planning, in building its
    # lists and in appending to `findings` than the rule does in reading 10,000 suspects.
    # The newline before each ")" ends a rule's trailing comment, if it has one.
    union = "\nUNION ALL BY NAME\n".join(f"(\n{rule}\n)" for rule in rules)
    return f"INSERT INTO findings BY NAME\n{union}"


def _columns_sql(table: str, source: str | None) -> str:
    # Identifiers come from the TABLES contract, never from input: casts pin each column's type,
    # and an absent table becomes an empty one so every rule can name it.
    columns = TABLES[table]
    if source is None:
        select = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in columns.items())
        return f"CREATE TEMP VIEW {table} AS SELECT {select} WHERE false"
    select = ", ".join(f"CAST({c} AS {t}) AS {c}" for c, t in columns.items())
    return f"CREATE TEMP VIEW {table} AS SELECT {select} FROM {source}"


def _load_inputs(
    con: duckdb.DuckDBPyConnection, snapshots: Mapping[str, SnapshotInput]
) -> dict[str, int]:
    unknown = set(snapshots) - set(TABLES)
    if unknown:
        raise SnapshotError(f"unknown snapshot tables: {', '.join(sorted(unknown))}")
    rows: dict[str, int] = {}
    for table in TABLES:
        source = None
        if table in snapshots:
            source = f"src_{table}"
            data = snapshots[table]
            # Column names and row counts come from the Parquet footer or the Arrow table
            # itself: no query reads the data before the rules do.
            if isinstance(data, str | os.PathLike):
                path = str(Path(data))
                con.register(source, con.read_parquet(path))
                rows[table] = pq.read_metadata(path).num_rows
            else:
                con.register(source, data)
                rows[table] = -1 if getattr(data, "num_rows", None) is None else data.num_rows
            missing = set(TABLES[table]) - set(con.view(source).columns)
            if missing:
                raise SnapshotError(f"{table} lacks columns: {', '.join(sorted(missing))}")
            if rows[table] < 0:
                [(counted,)] = con.sql(f"SELECT count(*) FROM {source}").fetchall()
                rows[table] = int(counted)
        con.execute(_columns_sql(table, source))
    return rows


def reconcile(
    snapshots: Mapping[str, SnapshotInput],
    *,
    period: str | None,
    tolerance: Tolerance | None = None,
    threads: int | None = None,
) -> Result:
    """Compare the snapshots and return every difference found for `period` (YYYY-MM).

    Snapshots may hold neighbouring periods so that records match across a month end; only
    findings that belong to `period` are returned (all of them when period is None).
    """
    tolerance = tolerance or Tolerance()
    config: dict[str, Any] = {
        # Only what the wheel carries: nothing is ever downloaded.
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        # Every result is ordered explicitly (90_result.sql); not keeping the scan order lets
        # the temp tables of 02_prepare.sql be built in parallel without a reordering step.
        "preserve_insertion_order": False,
        # The rules scan each Parquet file more than once: parse its footer once.
        "enable_object_cache": True,
    }
    if threads is not None:
        config["threads"] = threads
    con = duckdb.connect(":memory:", config=config)
    try:
        input_rows = _load_inputs(con, snapshots)
        con.execute(_sql("00_params.sql"), [period, tolerance.default_minor])
        con.execute(
            "CREATE TEMP TABLE tolerances (currency VARCHAR PRIMARY KEY, tolerance_minor BIGINT)"
        )
        if tolerance.by_currency:
            con.executemany(
                _sql("01_tolerance.sql"),
                [[c.upper(), v] for c, v in sorted(tolerance.by_currency.items())],
            )
        con.execute(_sql("02_prepare.sql"))
        supplied = set(snapshots)
        evaluated = frozenset(k for k, needs in REQUIRES.items() if needs <= supplied)
        rules = [_sql(name) for kind, name in _rule_files() if kind in evaluated]
        if rules:
            con.execute(_findings_sql(rules))
        findings = con.sql(_sql("90_result.sql")).to_arrow_table()
    finally:
        con.close()
    return Result(findings=findings, kinds_evaluated=evaluated, input_rows=input_rows)
