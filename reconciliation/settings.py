from pathlib import Path

from pydantic import Field

from lineage.settings import LineageSettings


class ReconciliationSettings(LineageSettings):
    """CONCORD_RECONCILIATION_* settings: where snapshots go, tolerances, which systems to read."""

    # Each run's snapshots are kept as Parquet in <dir>/<run id>/ to re-examine it offline.
    reconciliation_dir: Path = Path("reconciliation-runs")
    reconciliation_tolerance_minor: int = Field(default=0, ge=0)
    # e.g. {"JPY": 0, "USD": 1}: overrides the default for one currency.
    reconciliation_tolerance_by_currency: dict[str, int] = {}
    # The sandbox (or real) systems' base URLs; unset means that system is not snapshotted.
    reconciliation_billing_url: str | None = None
    reconciliation_erp_url: str | None = None
    # HubSpot's CRM v3 base URL, and the private app token sent as a bearer token.
    reconciliation_crm_url: str | None = None
    reconciliation_crm_token: str | None = None
    reconciliation_http_timeout_s: float = Field(default=30.0, gt=0)
    # A running run that has not written its heartbeat for this long (its process died) is
    # marked failed by the next run of its period instead of refusing it.
    reconciliation_stale_after_s: float = Field(default=120.0, gt=0)
    # Workflows whose transactions post billing invoices to the ERP.
    reconciliation_invoice_workflows: tuple[str, ...] = ("invoice_generated",)
