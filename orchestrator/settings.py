import os
import socket

from pydantic import Field

from orchestrator.client.queue import QueueSettings


def split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class OrchestratorSettings(QueueSettings):
    """Settings of `concord worker`; every field is CONCORD_<NAME> in the environment."""

    billing_url: str = "http://127.0.0.1:8100/billing"
    # Stripe secret key (sk_...) for billing writes; empty sends no Authorization header.
    billing_api_key: str = ""
    erp_url: str = "http://127.0.0.1:8100/erp"
    crm_url: str = "http://127.0.0.1:8100/crm"
    provisioning_url: str = "http://127.0.0.1:8100/provisioning"
    support_url: str = "http://127.0.0.1:8100/support"
    # Segment's Tracking API (https://api.segment.io in production) and the source's write key.
    analytics_url: str = "http://127.0.0.1:8100/analytics"
    # The sandbox's own key (sandbox.analytics.DEFAULT_WRITE_KEY, not importable from here);
    # empty sends no Authorization header, which Segment refuses.
    analytics_write_key: str = "concord-sandbox-write-key"
    # Hosts or CIDR ranges outbound calls may reach although private, loopback or link-local
    # ("127.0.0.1,10.0.0.0/8"). Empty: only public addresses.
    outbound_allowlist: str = ""
    connector_timeout_s: float = 10.0
    # A job longer than this is cancelled; the lease outlives it so no other worker overlaps.
    job_timeout_s: int = 60
    lease_s: int = 90
    # How often an idle worker asks Redis for due jobs. arq's 0.5 s default added up to half a
    # second to every wake-up and retry (docs/performance.md); 50 ms costs 20 cheap calls a second.
    poll_delay_s: float = Field(default=0.05, gt=0, le=5)
    # Jobs one worker runs at once (each holds a database connection while it runs).
    max_jobs: int = Field(default=20, ge=1, le=500)
    max_attempts: int = 5
    retry_base_s: float = 1.0
    retry_cap_s: float = 300.0
    sweep_every_s: int = Field(default=15, ge=1, le=60)
    # The sweeper leaves younger transactions to the wake-up that intake already queued.
    sweep_min_age_s: float = 15.0
    worker_id: str = Field(default_factory=_default_worker_id)
    # Calls per second allowed per target system, shared by all workers ("erp=5,crm=20").
    rate_limits: dict[str, float] = Field(default_factory=lambda: {"erp": 20.0})
    # A rate-limit wait up to this long is slept in place; longer ones free the worker slot.
    max_inline_wait_s: float = 1.0
    # Minutes between scheduled reconciliations; 0 turns them off. Each reconciles the current
    # month and the months whose transactions changed within twice this spacing.
    reconcile_every_min: int = Field(default=0, ge=0, le=60)
    # At most this many months per scheduled reconciliation, the current one included.
    reconcile_max_periods: int = Field(default=6, ge=1, le=60)
    # Minutes between usage aggregation runs (each closed period's usage becomes one ERP
    # posting per subscription); 0 turns them off.
    usage_every_min: int = Field(default=5, ge=0, le=60)
    # How long after a period ends its late usage is still counted in the period's summary;
    # usage arriving later is posted as an adjustment.
    usage_grace_s: float = Field(default=3600.0, ge=0)
    # The ERP accounts a usage summary accrues to: unbilled receivable (debit), usage revenue.
    usage_receivable_account: str = "1210"
    usage_revenue_account: str = "4100"
    # The account an amendment's proration is accrued to against each product's revenue account.
    proration_receivable_account: str = "1210"
    # How long an event may wait for its predecessor before it becomes an exception.
    ordering_timeout_s: float = 3600.0
    # The versioned mapping file (TOML); empty: orchestrator/mappings.toml as shipped.
    mappings_file: str = ""
