"""The outside world in one ASGI app: each simulated system is mounted under its own prefix."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI

from sandbox.analytics import DEFAULT_WRITE_KEY, create_analytics_app
from sandbox.billing import BillingState, create_billing_app
from sandbox.crm import CrmState, create_crm_app
from sandbox.erp import create_erp_app
from sandbox.faults import FaultController
from sandbox.ops_systems import create_provisioning_app, create_support_app

FAULTS_ENV = "CONCORD_SANDBOX_FAULTS"
DATA_DIR_ENV = "CONCORD_SANDBOX_DATA_DIR"
WEBHOOK_URL_ENV = "CONCORD_SANDBOX_WEBHOOK_URL"
STRIPE_SECRET_ENV = "CONCORD_STRIPE_WEBHOOK_SECRET"
HUBSPOT_SECRET_ENV = "CONCORD_HUBSPOT_CLIENT_SECRET"
# The same variable configures the worker's key, so one setting keeps both sides in step.
ANALYTICS_WRITE_KEY_ENV = "CONCORD_ANALYTICS_WRITE_KEY"

health = APIRouter()


@health.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _env(value: str | None, name: str) -> str | None:
    return value if value is not None else (os.environ.get(name) or None)


def create_sandbox_app(
    *,
    data_dir: Path | None = None,
    faults: str | None = None,
    webhook_url: str | None = None,
    stripe_webhook_secret: str | None = None,
    hubspot_client_secret: str | None = None,
    analytics_write_key: str | None = None,
) -> FastAPI:
    """All simulated systems, sharing one fault plan.

    webhook_url is Concord's API base URL: billing events go to {webhook_url}/v1/webhooks/stripe
    and CRM events to {webhook_url}/v1/webhooks/hubspot. Every argument left None is read from
    the environment (CONCORD_SANDBOX_FAULTS, CONCORD_SANDBOX_DATA_DIR,
    CONCORD_SANDBOX_WEBHOOK_URL, CONCORD_STRIPE_WEBHOOK_SECRET, CONCORD_HUBSPOT_CLIENT_SECRET,
    CONCORD_ANALYTICS_WRITE_KEY), so `uvicorn --factory`, which passes none, is configured from
    there. The analytics write key defaults to sandbox.analytics.DEFAULT_WRITE_KEY.
    """
    data_path = data_dir or (Path(d) if (d := _env(None, DATA_DIR_ENV)) else None)
    controller = FaultController.from_spec(_env(faults, FAULTS_ENV) or "")
    base = _env(webhook_url, WEBHOOK_URL_ENV)
    billing = create_billing_app(
        data_dir=data_path,
        faults=controller,
        webhook_url=f"{base.rstrip('/')}/v1/webhooks/stripe" if base else None,
        webhook_secret=_env(stripe_webhook_secret, STRIPE_SECRET_ENV),
    )
    crm = create_crm_app(
        data_dir=data_path,
        faults=controller,
        webhook_url=f"{base.rstrip('/')}/v1/webhooks/hubspot" if base else None,
        client_secret=_env(hubspot_client_secret, HUBSPOT_SECRET_ENV),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Mounted apps get no lifespan of their own: close their webhook senders here.
        yield
        billing_state: BillingState = billing.state.billing
        crm_state: CrmState = crm.state.crm
        for sender in (billing_state.sender, crm_state.sender):
            if sender is not None:
                await sender.aclose()

    app = FastAPI(title="Concord sandbox", lifespan=lifespan)
    app.include_router(health)
    app.mount("/billing", billing)
    app.mount("/crm", crm)
    app.mount("/erp", create_erp_app(data_dir=data_path, faults=controller))
    app.mount("/provisioning", create_provisioning_app(data_dir=data_path, faults=controller))
    app.mount("/support", create_support_app(data_dir=data_path, faults=controller))
    app.mount(
        "/analytics",
        create_analytics_app(
            data_dir=data_path,
            faults=controller,
            write_key=_env(analytics_write_key, ANALYTICS_WRITE_KEY_ENV) or DEFAULT_WRITE_KEY,
        ),
    )
    return app
