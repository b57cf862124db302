"""One way to reconcile a period from settings: the API, `concord reconcile` and the cron use it."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reconciliation.engine import Tolerance
from reconciliation.http_source import HttpSource
from reconciliation.runner import RunOptions, begin_run, carry_out
from reconciliation.settings import ReconciliationSettings
from reconciliation.sources import LineageSource, SnapshotSource


def options(settings: ReconciliationSettings) -> RunOptions:
    return RunOptions(
        runs_dir=settings.reconciliation_dir,
        tolerance=Tolerance(
            settings.reconciliation_tolerance_minor,
            settings.reconciliation_tolerance_by_currency,
        ),
        stale_after=timedelta(seconds=settings.reconciliation_stale_after_s),
    )


@asynccontextmanager
async def sources(
    sessionmaker: async_sessionmaker[AsyncSession], settings: ReconciliationSettings
) -> AsyncIterator[list[SnapshotSource]]:
    """Concord's own lineage, plus the billing, ERP and CRM list endpoints when configured."""
    found: list[SnapshotSource] = [
        LineageSource(sessionmaker, invoice_workflows=settings.reconciliation_invoice_workflows)
    ]
    async with httpx.AsyncClient(timeout=settings.reconciliation_http_timeout_s) as client:
        if (
            settings.reconciliation_billing_url
            or settings.reconciliation_erp_url
            or settings.reconciliation_crm_url
        ):
            found.append(
                HttpSource(
                    billing_url=settings.reconciliation_billing_url,
                    erp_url=settings.reconciliation_erp_url,
                    crm_url=settings.reconciliation_crm_url,
                    crm_token=settings.reconciliation_crm_token,
                    client=client,
                )
            )
        yield found


async def reconcile_period(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: ReconciliationSettings,
    *,
    period: str,
    trigger: str,
    requested_by: str | None = None,
) -> int:
    """Run a reconciliation of `period` (YYYY-MM) and return its run id."""
    run_id = await begin_period(
        sessionmaker, settings, period=period, trigger=trigger, requested_by=requested_by
    )
    return await finish_period(sessionmaker, settings, run_id, period=period)


async def begin_period(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: ReconciliationSettings,
    *,
    period: str,
    trigger: str,
    requested_by: str | None = None,
) -> int:
    """Claim `period` with a running run (RunInProgress if one is working) for finish_period."""
    return await begin_run(
        sessionmaker,
        period=period,
        options=options(settings),
        trigger=trigger,
        requested_by=requested_by,
    )


async def finish_period(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: ReconciliationSettings,
    run_id: int,
    *,
    period: str,
) -> int:
    async with sources(sessionmaker, settings) as found:
        return await carry_out(
            sessionmaker, run_id, period=period, sources=found, options=options(settings)
        )
