from typing import Any

from orchestrator.settings import OrchestratorSettings
from orchestrator.worker import build_worker


async def run_burst(settings: OrchestratorSettings, **overrides: Any) -> None:
    """Run a real arq worker until its queue is empty (deferred retries included)."""
    worker = build_worker(settings, burst=True, handle_signals=False, poll_delay=0.02, **overrides)
    try:
        await worker.main()
    finally:
        await worker.close()
