"""The event loop Concord's worker runs on: uvloop where it is installed."""

import asyncio


def use_uvloop() -> None:
    """uvloop where it is installed (uvicorn[standard] brings it), as uvicorn's `loop="auto"`
    does for the API: the worker's CPU goes mostly to socket round trips (docs/performance.md),
    which uvloop makes cheaper than asyncio's own loop. Kept apart from orchestrator.worker so
    that the bare-arq baseline (bench/noop_worker.py) takes the same loop without its imports."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
