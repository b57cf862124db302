"""Prometheus exposition of the control plane's figures, computed per scrape.

Labels are bounded: workflows are the configured ones (others become "other"), states and
classifications come from fixed sets, and currencies are ISO 4217 codes.
"""

from datetime import timedelta

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.settings import ApiSettings
from lineage import sla
from lineage.clock import utc_now
from lineage.enums import ExceptionStatus
from lineage.models import BusinessTransaction, ExceptionItem

SLA_WINDOW = timedelta(hours=24)
CLASSIFICATIONS = frozenset(
    {
        "connection",
        "timeout",
        "rate_limit",
        "validation",
        "mapping_missing",
        "conflict",
        "retry_budget_exhausted",
        "auth",
        "terminal",
    }
)


def _workflow(name: str | None, known: frozenset[str]) -> str:
    if name is None:
        return "none"
    return name if name in known else "other"


async def render(session: AsyncSession, settings: ApiSettings) -> bytes:
    known = frozenset(settings.sla_targets_s)
    registry = CollectorRegistry(auto_describe=True)
    # Scrapes within CONCORD_METRICS_MAX_AGE_S share one reading (api.shared_readings): its age.
    Gauge(
        "concord_figures_computed_timestamp_seconds",
        "When the figures below were read from the database (Unix time).",
        registry=registry,
    ).set(utc_now().timestamp())
    txs = Gauge(
        "concord_transactions",
        "Transactions by workflow and state.",
        ["workflow", "state"],
        registry=registry,
    )
    for workflow, state, n in await session.execute(
        select(BusinessTransaction.workflow, BusinessTransaction.state, func.count()).group_by(
            BusinessTransaction.workflow, BusinessTransaction.state
        )
    ):
        txs.labels(_workflow(workflow, known), state.value).inc(n)
    open_exc = Gauge(
        "concord_open_exceptions",
        "Open exceptions.",
        ["workflow", "classification"],
        registry=registry,
    )
    for workflow, classification, n in await session.execute(
        select(BusinessTransaction.workflow, ExceptionItem.classification, func.count())
        .join(
            BusinessTransaction, BusinessTransaction.correlation_id == ExceptionItem.correlation_id
        )
        .where(ExceptionItem.status == ExceptionStatus.OPEN)
        .group_by(BusinessTransaction.workflow, ExceptionItem.classification)
    ):
        label = classification if classification in CLASSIFICATIONS else "other"
        open_exc.labels(_workflow(workflow, known), label).inc(n)
    await _sla_gauges(session, settings, registry, known)
    return generate_latest(registry)


async def _sla_gauges(
    session: AsyncSession, settings: ApiSettings, registry: CollectorRegistry, known: frozenset[str]
) -> None:
    labels = ["workflow"]
    attainment = Gauge(
        "concord_sla_attainment_ratio", "SLA met / decided, last 24 h.", labels, registry=registry
    )
    breaches = Gauge("concord_sla_breaches", "SLA breaches, last 24 h.", labels, registry=registry)
    overdue = Gauge(
        "concord_overdue_transactions",
        "Active past their SLA, last 24 h.",
        labels,
        registry=registry,
    )
    latency = Gauge(
        "concord_e2e_latency_seconds",
        "Posted end-to-end latency, last 24 h.",
        ["workflow", "quantile"],
        registry=registry,
    )
    at_risk = Gauge(
        "concord_money_at_risk_minor",
        "Amounts not done past their SLA, last 24 h.",
        ["workflow", "currency"],
        registry=registry,
    )
    now = utc_now()
    for fig in await sla.summary(
        session,
        since=now - SLA_WINDOW,
        until=now,
        group_by="workflow",
        targets=settings.sla_targets_s,
        default_target_s=settings.sla_default_target_s,
        now=now,
    ):
        if fig.group not in known:
            continue
        if fig.attainment_pct is not None:
            attainment.labels(fig.group).set(fig.attainment_pct / 100)
        breaches.labels(fig.group).set(fig.breached)
        overdue.labels(fig.group).set(fig.overdue)
        for quantile, value in (("0.5", fig.p50_s), ("0.95", fig.p95_s), ("0.99", fig.p99_s)):
            if value is not None:
                latency.labels(fig.group, quantile).set(value)
        for currency, amount in fig.money_at_risk.items():
            at_risk.labels(fig.group, currency).set(amount)
