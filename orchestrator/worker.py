"""The arq worker: functions, cron, start-up and shut-down, built from settings."""

import asyncio
import logging
import re
import signal
import time
from typing import Any

from arq import cron, func
from arq.worker import Worker
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine

from lineage.db import make_engine, make_sessionmaker
from orchestrator import jobs, sweeper
from orchestrator.client.queue import (
    HEALTH_CHECK_INTERVAL_S,
    QUEUE_NAME,
    JobName,
    deserialize_job,
    redis_settings,
    serialize_job,
)
from orchestrator.connectors.hubspot import HubSpotCrm
from orchestrator.connectors.netsuite import NetSuiteErp
from orchestrator.connectors.ops import TenantProvisioning, ZendeskSupport
from orchestrator.connectors.segment import SegmentAnalytics
from orchestrator.connectors.stripe_billing import StripeBilling
from orchestrator.deps import WorkerDeps, get_deps
from orchestrator.event_loop import use_uvloop
from orchestrator.mappings import Mappings, MappingsError, load_mappings
from orchestrator.ratelimit import TokenBucket
from orchestrator.settings import OrchestratorSettings, split_list
from orchestrator.targets_analytics import SegmentEvents
from orchestrator.targets_http import (
    HubSpotAccounts,
    NetSuiteLedger,
    OpsTenants,
    OpsTickets,
    StripeSubscriptions,
)

log = logging.getLogger(__name__)

# arq's own job lines name the job ("tx:<correlation id>[:<due>]:run_transaction"), not the
# transaction: tag them with its correlation ID, as every line about a transaction is.
_WAKEUP_JOB = re.compile(r"\btx:([^:\s()']+)")


class _JobCorrelation(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            found = _WAKEUP_JOB.search(record.getMessage())
            if found:
                record.correlation_id = found.group(1)
        return True


def _tag_arq_job_lines() -> None:
    arq_log = logging.getLogger("arq.worker")
    if not any(isinstance(f, _JobCorrelation) for f in arq_log.filters):
        arq_log.addFilter(_JobCorrelation())


# Connections a worker may open beyond one per job, for the moments a job holds two.
POOL_OVERFLOW = 5


def worker_engine(settings: OrchestratorSettings) -> AsyncEngine:
    """One pooled connection per job the worker runs at once. A smaller pool (it was 10 for 20
    jobs) opens and closes an overflow connection whenever more jobs than that write together:
    a TCP and TLS handshake, authentication and every statement prepared anew, a tenth of a
    busy worker's CPU (docs/performance.md, "Lineage statements built once")."""
    return make_engine(
        settings.database_url,
        echo=settings.database_echo,
        pool_size=settings.max_jobs,
        max_overflow=POOL_OVERFLOW,
    )


def build_worker(
    settings: OrchestratorSettings, *, mappings: Mappings | None = None, **overrides: Any
) -> Worker:
    """An arq Worker for these settings; tests pass burst=True, the CLI runs it until signalled.

    Raises MappingsError at once when the mapping file cannot be used: no worker runs on it.
    """
    _tag_arq_job_lines()
    mapped = mappings or load_mappings(settings.mappings_file or None)

    async def startup(ctx: dict[str, Any]) -> None:
        loop_module = type(asyncio.get_running_loop()).__module__.partition(".")[0]
        log.info("worker running on the %s event loop", loop_module)
        engine = worker_engine(settings)
        ctx["engine"] = engine
        allow = split_list(settings.outbound_allowlist)
        timeout = settings.connector_timeout_s
        ctx["deps"] = WorkerDeps(
            settings=settings,
            sessionmaker=make_sessionmaker(engine),
            redis=ctx["redis"],
            erp=NetSuiteLedger(
                NetSuiteErp(settings.erp_url, timeout_s=timeout, allow=allow),
                mappings=mapped,
                usage_accounts=(settings.usage_receivable_account, settings.usage_revenue_account),
            ),
            crm=HubSpotAccounts(HubSpotCrm(settings.crm_url, timeout_s=timeout, allow=allow)),
            billing=StripeSubscriptions(
                StripeBilling(
                    settings.billing_url,
                    api_key=settings.billing_api_key,
                    timeout_s=timeout,
                    allow=allow,
                )
            ),
            provisioning=OpsTenants(
                TenantProvisioning(settings.provisioning_url, timeout_s=timeout, allow=allow)
            ),
            support=OpsTickets(
                ZendeskSupport(settings.support_url, timeout_s=timeout, allow=allow)
            ),
            analytics=SegmentEvents(
                SegmentAnalytics(
                    settings.analytics_url,
                    write_key=settings.analytics_write_key,
                    timeout_s=timeout,
                    allow=allow,
                )
            ),
            limiter=TokenBucket(ctx["redis"], limits=settings.rate_limits),
            mappings=mapped,
        )
        # Catch up at once on whatever was left while no worker ran.
        await sweeper.sweep_once(ctx["deps"], min_age_s=0)

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "deps" in ctx:
            deps = get_deps(ctx)
            targets = (
                deps.erp,
                deps.crm,
                deps.billing,
                deps.provisioning,
                deps.support,
                deps.analytics,
            )
            for target in targets:
                await target.aclose()
        if "engine" in ctx:
            await ctx["engine"].dispose()

    step = settings.sweep_every_s
    crons = [
        cron(
            jobs.sweep,
            name=JobName.SWEEP.value,
            second=set(range(0, 60, step)),
            run_at_startup=False,
            keep_result=0,
            unique=True,
        ),
    ]
    if settings.usage_every_min:
        crons.append(
            cron(
                jobs.summarise_usage,
                name=jobs.SUMMARISE_USAGE,
                second={45},
                minute=set(range(0, 60, settings.usage_every_min)),
                keep_result=0,
                unique=True,
                timeout=600,
            )
        )
    if settings.reconcile_every_min:
        crons.append(
            cron(
                jobs.reconcile,
                name=JobName.RECONCILE.value,
                second={30},
                minute=set(range(0, 60, settings.reconcile_every_min)),
                keep_result=0,
                unique=True,
                timeout=600,
            )
        )
    options: dict[str, Any] = {
        "functions": [
            func(
                jobs.run_transaction,
                name=JobName.RUN_TRANSACTION.value,
                keep_result=0,
                max_tries=10,
            ),
        ],
        "cron_jobs": crons,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": redis_settings(settings.redis_url),
        "queue_name": QUEUE_NAME,
        "job_serializer": serialize_job,
        "job_deserializer": deserialize_job,
        "keep_result": 0,
        "job_timeout": settings.job_timeout_s,
        # On SIGTERM, in-flight jobs get this long to finish before they are cancelled.
        "job_completion_wait": settings.job_timeout_s,
        "max_jobs": settings.max_jobs,
        "poll_delay": settings.poll_delay_s,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
    }
    options.update(overrides)
    return Worker(**options)


def run_supervised(settings: OrchestratorSettings, *, max_backoff_s: float = 30.0) -> None:
    """Run the worker until a signal stops it; when Redis goes away, rebuild it and go on.

    Nothing is lost meanwhile: the transactions live in the database, and the start-up sweep
    of the rebuilt worker re-queues whatever a restarted or flushed Redis forgot.
    """
    try:
        mappings = load_mappings(settings.mappings_file or None)
    except MappingsError as exc:
        raise SystemExit(f"concord worker: not starting: {exc}") from exc
    log.info("mappings v%s loaded", mappings.version)
    use_uvloop()
    # arq's signal handlers live in its event loop, and between runs that loop is not running:
    # on uvloop a SIGTERM then was swallowed, and a worker whose Redis had gone ignored it for
    # good. So the handlers in place before the first run (the CLI's clean exit) are put back
    # after each one, until the next worker installs arq's again.
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stopped: list[int] = []
    backoff = 1.0
    while True:
        worker = build_worker(settings, mappings=mappings)
        worker.on_stop = stopped.append
        started = time.monotonic()
        try:
            worker.run()
            return
        except (RedisError, OSError) as exc:
            for signum, handler in handlers.items():
                if handler is not None:  # None: set outside Python, nothing to put back
                    signal.signal(signum, handler)
            # arq's handler stops picking jobs at once and calls on_stop from a task, which a
            # run failing meanwhile never gets to.
            if stopped or not worker.allow_pick_jobs:
                return
            if time.monotonic() - started > 60:
                backoff = 1.0
            log.warning(
                "lost Redis (%s: %s); restarting the worker in %.0fs",
                type(exc).__name__,
                exc,
                backoff,
            )
            time.sleep(backoff)
            backoff = min(max_backoff_s, backoff * 2)
