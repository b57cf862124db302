"""The dashboard in a real headless Chromium, against a real API, worker, sandbox and
`streamlit run`: ops finds an exception an ERP outage caused, replays it, and sees it posted;
a viewer sees no replay button. Screenshots of each page go to test-artifacts/.
"""

import asyncio
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from lineage.enums import Role
from orchestrator.settings import OrchestratorSettings
from orchestrator.worker import build_worker
from tests.dashboard.conftest import Seeded, auth
from tests.support.ports import free_port_run
from tests.support.servers import running_streamlit

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip
ROOT = Path(__file__).parents[2]
ARTIFACTS = ROOT / "test-artifacts"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TIMEOUT_MS = 20_000
# The same flags `concord dashboard` passes: no developer toolbar, Concord's colours.
DASHBOARD_FLAGS = ["--client.toolbarMode", "minimal", "--theme.primaryColor", "#2563eb"]


def _require_chromium() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "the playwright package is not installed"
    else:
        missing = (
            ""
            if Path(CHROMIUM).is_file()
            else f"{CHROMIUM} is missing (apt-get install -y chromium)"
        )
    if not missing:
        return
    if IN_CI:
        pytest.fail(f"browser test cannot run in CI: {missing}")
    print(f"skipping the browser test: {missing}")  # noqa: T201
    pytest.skip(missing)


@contextmanager
def running_worker(settings: OrchestratorSettings) -> Iterator[None]:
    """A long-running arq worker (not burst) in its own thread and event loop."""
    stop = threading.Event()

    async def run() -> None:
        worker = build_worker(settings, handle_signals=False, poll_delay=0.05)
        task = asyncio.create_task(worker.main())
        while not stop.is_set() and not task.done():
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await worker.close()

    thread = threading.Thread(
        target=asyncio.run, args=(run(),), name="dashboard-worker", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def test_ops_replays_an_erp_fault_from_the_browser_and_a_viewer_cannot(seeded: Seeded) -> None:
    _require_chromium()
    from playwright.sync_api import Page, expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)

    def settle(page: Page) -> None:
        # Streamlit shows its "running" widget while a script runs.
        page.wait_for_load_state("networkidle")
        expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=TIMEOUT_MS)

    def shot(page: Page, name: str) -> None:
        settle(page)
        page.wait_for_timeout(600)  # charts animate in
        page.evaluate("document.querySelector('[data-testid=stMain]')?.scrollTo(0, 0)")
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def sign_in(page: Page, url: str, key: str) -> None:
        page.goto(url)
        page.get_by_placeholder("ck_…").fill(key)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page.get_by_text("Sign out")).to_be_visible(timeout=TIMEOUT_MS)

    def open_page(page: Page, title: str) -> None:
        page.get_by_test_id("stSidebarNavLink").filter(has_text=title).click()
        expect(page.get_by_role("heading", name=title)).to_be_visible(timeout=TIMEOUT_MS)

    with (
        running_worker(seeded.worker),
        running_streamlit(
            "dashboard/app.py",
            port=free_port_run(),
            args=DASHBOARD_FLAGS,
            env={**os.environ, "CONCORD_API_URL": seeded.api_url},
            cwd=ROOT,
        ) as url,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1600})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            expect(page.get_by_placeholder("ck_…")).to_be_visible()
            # Plotly loads while the user signs in (dashboard.ui.preload_charts), unseen.
            preload = page.locator(".st-key-concord_chart_preload .js-plotly-plot")
            expect(preload).to_have_count(1)
            expect(preload).to_be_hidden()
            shot(page, "01-sign-in")

            sign_in(page, url, seeded.keys[Role.OPS])
            expect(page.get_by_role("heading", name="Exceptions")).to_be_visible()
            shot(page, "02-exceptions-ops")
            page.get_by_role("textbox", name="Find").fill(seeded.failed_invoice)
            page.get_by_role("textbox", name="Find").press("Enter")
            expect(page.get_by_role("heading", name="Exception")).to_have_count(2)
            page.get_by_role("textbox", name="Reason (required, kept in the audit log)").fill(
                "ERP is back; replaying"
            )
            page.get_by_role("textbox", name="Reason (required, kept in the audit log)").press(
                "Enter"
            )
            shot(page, "03-exception-selected")
            page.get_by_role("button", name="Replay", exact=True).click()
            expect(page.get_by_text("Replay started: run 2")).to_be_visible()
            expect(page.get_by_text("is now").locator("..")).to_contain_text(
                "Posted", timeout=30_000
            )
            shot(page, "04-exception-replayed")

            detail = httpx.get(f"{seeded.api_url}/v1/transactions/{seeded.failed}",
                               headers=auth(seeded.keys[Role.VIEWER])).json()  # fmt: skip
            assert detail["state"] == "posted"

            for title, name in (("SLA overview", "05-sla"), ("Operations", "06-operations"),
                                ("Reconciliation", "08-reconciliation")):  # fmt: skip
                open_page(page, title)
                shot(page, name)
            open_page(page, "Transactions & lineage")
            page.get_by_role("textbox", name="Search by any ID").fill(seeded.failed_invoice)
            page.get_by_role("textbox", name="Search by any ID").press("Enter")
            expect(page.get_by_text(f"Correlation ID {seeded.failed}")).to_be_visible()
            shot(page, "07-transaction-lineage")

            viewer = browser.new_page(viewport={"width": 1440, "height": 1600})
            sign_in(viewer, url, seeded.keys[Role.VIEWER])
            open_page(viewer, "Exceptions")
            settle(viewer)
            expect(viewer.get_by_role("button", name="Replay", exact=True)).to_have_count(0)
            shot(viewer, "09-exceptions-viewer")

            # A link to a page, opened signed out (a bookmark, a link in an alert, a reload):
            # the sign-in form, then the page it named with its filters, not "Page not found".
            linked = browser.new_page(viewport={"width": 1440, "height": 1600})
            sign_in(linked, f"{url}/transactions?state=exception", seeded.keys[Role.VIEWER])
            expect(linked.get_by_role("heading", name="Transactions & lineage")).to_be_visible()
            expect(linked.get_by_text("Page not found")).to_have_count(0)
            settle(linked)
            expect(linked.get_by_test_id("stMultiSelect")).to_contain_text("Exception")
            expect(linked.get_by_text("The link opened")).to_have_count(0)
            shot(linked, "10-linked-page-after-sign-in")

            # A link to a page the role may not open: its start page, and a word on why.
            barred = browser.new_page(viewport={"width": 1440, "height": 1600})
            sign_in(barred, f"{url}/audit", seeded.keys[Role.VIEWER])
            expect(barred.get_by_role("heading", name="Transactions & lineage")).to_be_visible()
            expect(barred.get_by_test_id("stAlert")).to_contain_text(
                "The link opened Audit log, which the Viewer role cannot see"
            )
            shot(barred, "11-link-to-a-page-the-role-cannot-open")
        finally:
            browser.close()
