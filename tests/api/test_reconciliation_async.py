"""Starting a reconciliation run with `Prefer: respond-async`: answered as soon as it has begun,
followed to its end through GET, and failed (not left running) when the API stops under it."""

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.main import create_app
from api.routes.reconciliation import router
from api.settings import ApiSettings
from lineage.enums import Role
from lineage.models import AuditLog, ReconciliationRun
from reconciliation.settings import ReconciliationSettings
from tests.api.helpers import auth
from tests.reconciliation.world import PERIOD
from tests.support.servers import serve_in_thread

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
def silent_url() -> Iterator[str]:
    """An address that takes connections and requests and never answers them."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def _app(api_settings: ApiSettings, tmp_path: Path, erp_url: str) -> Any:
    app = create_app(api_settings)
    app.include_router(router)
    app.state.reconciliation_settings = ReconciliationSettings(
        database_url=api_settings.database_url,
        reconciliation_dir=tmp_path / "runs",
        reconciliation_erp_url=erp_url,
        reconciliation_http_timeout_s=60,
    )
    return app


async def _until(api: httpx.AsyncClient, path: str, headers: dict[str, str], done: Any) -> Any:
    deadline = time.monotonic() + 20
    while not done(body := (await api.get(path, headers=headers)).json()):
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)
    return body


async def test_a_run_answered_at_once_is_followed_to_its_end(
    api_settings: ApiSettings,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    sandbox_url: str,
    tmp_path: Path,
) -> None:
    finance, viewer = auth(api_keys[Role.FINANCE]), auth(api_keys[Role.VIEWER])
    with serve_in_thread(_app(api_settings, tmp_path, f"{sandbox_url}/erp")) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            started = await api.post(
                "/v1/reconciliation/runs",
                json={"period": PERIOD},
                headers={**finance, "Prefer": "wait=5, respond-async"},
            )
            location = started.headers.get("Location")
            finished = await _until(api, str(location), viewer, lambda r: r["state"] != "running")

    assert started.status_code == 202, started.text
    assert started.headers["Preference-Applied"] == "respond-async"
    assert location == f"/v1/reconciliation/runs/{started.json()['id']}"
    assert started.json()["finished_at"] is None
    assert (finished["state"], finished["progress"], finished["error"]) == ("succeeded", 100, None)
    async with sessionmaker() as session:
        [audited] = await session.scalars(
            select(AuditLog).where(AuditLog.action == "reconciliation.run")
        )
    assert audited.target == f"reconciliation_run:{finished['id']}"
    assert audited.detail == {"period": PERIOD, "answered": "at start"}


async def test_a_run_answered_at_once_holds_its_period_and_fails_when_the_api_stops(
    api_settings: ApiSettings,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    silent_url: str,
    tmp_path: Path,
) -> None:
    finance = auth(api_keys[Role.FINANCE])
    with serve_in_thread(_app(api_settings, tmp_path, silent_url)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            t0 = time.monotonic()
            started = await api.post(
                "/v1/reconciliation/runs", json={"period": PERIOD}, headers={**finance, **ASYNC}
            )
            answered_s = time.monotonic() - t0
            waiting = await _until(
                api,
                f"/v1/reconciliation/runs/{started.json()['id']}",
                finance,
                lambda r: r["stage"] == "snapshot:http",
            )
            again = await api.post(
                "/v1/reconciliation/runs", json={"period": PERIOD}, headers={**finance, **ASYNC}
            )

    assert started.status_code == 202, started.text
    # The ERP never answers (60 s timeout): the answer did not wait for it.
    assert answered_s < 30
    assert waiting["state"] == "running"
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "run_in_progress"
    async with sessionmaker() as session:
        [run] = await session.scalars(select(ReconciliationRun))
    assert (run.state, run.error) == ("failed", "cancelled: the process running it was stopping")
