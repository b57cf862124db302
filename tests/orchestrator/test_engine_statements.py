"""The statements and commits of a first run of a one-step workflow, in order.

Each is a round trip on the worker's path, and on a busy machine a round trip costs more in
scheduling than in the database (docs/performance.md, "Fewer engine round trips"). A read or
write creeping back into a first run fails here.
"""

from arq.connections import ArqRedis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from orchestrator import engine
from orchestrator.client.queue import queue_pool
from orchestrator.engine import Outcome
from orchestrator.settings import OrchestratorSettings
from tests.dbutil import invoice_transaction, statement_shape
from tests.fakes import Fakes, ScriptedErp, fake_deps

FIRST_RUN = [
    # The claim, in one transaction (on SQLite): the lease, run 1 counted and opened (a transaction that
    # never ran has no run to look for, and a new run no steps), an unsettled predecessor on
    # the invoice's ordering key.
    "UPDATE business_transaction",
    "UPDATE business_transaction",
    "INSERT workflow_run",
    "SELECT business_transaction",
    # The attempt, committed before the call: the step, with its first attempt counted.
    "INSERT workflow_step",
    "INSERT step_attempt",
    # The outcome, committed after the call, with the ERP's record as a reference and, the
    # run's last step having succeeded, the transaction's settlement.
    "UPDATE step_attempt",
    "UPDATE workflow_step",
    "INSERT external_ref",
    "UPDATE business_transaction",
    "UPDATE workflow_run",
    # After that commit: what waits behind it on the ordering key.
    "SELECT business_transaction",
]
# The claim, the attempt before the call, the outcome and settlement after it.
FIRST_RUN_COMMITS = 3
# PostgreSQL takes the lease and opens run 1 in one statement, then reads the predecessor; it
# writes the step and its first attempt in another, and the outcome with the settlement in a
# third, each in autocommit (lineage/hot_path.py): one round trip each for BEGIN, the writes and
# COMMIT, and no commit of its own.
FIRST_RUN_POSTGRES = [
    "WITH business_transaction",
    FIRST_RUN[3],
    "WITH workflow_step",
    "WITH step_attempt",
    FIRST_RUN[-1],
]
POSTGRES_COMMITS_SAVED = 3


async def test_a_first_run_of_one_step_sends_these_statements(
    database_url: str, redis_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    correlation_id = await invoice_transaction(
        sessionmaker, "in_stmt", ordering_key="invoice:in_stmt"
    )
    pool: ArqRedis = queue_pool(redis_url)
    settings = OrchestratorSettings.model_validate(
        {"database_url": database_url, "redis_url": redis_url}
    )
    deps = fake_deps(settings, sessionmaker, pool, Fakes(erp=ScriptedErp()))
    sent: list[str] = []
    commits: list[object] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        sent.append(statement_shape(statement))

    def committed(conn: object) -> None:
        commits.append(conn)

    sync_engine = sessionmaker.kw["bind"].sync_engine
    event.listen(sync_engine, "before_cursor_execute", record)
    event.listen(sync_engine, "commit", committed)
    try:
        outcome = await engine.run_transaction(deps, correlation_id)
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)
        event.remove(sync_engine, "commit", committed)
        await pool.aclose()

    assert outcome is Outcome.POSTED
    postgres = database_url.startswith("postgresql")
    assert sent == (FIRST_RUN_POSTGRES if postgres else FIRST_RUN)
    assert len(commits) == FIRST_RUN_COMMITS - POSTGRES_COMMITS_SAVED * postgres
