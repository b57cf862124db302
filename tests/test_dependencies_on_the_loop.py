"""Every route's endpoint and dependencies, in the API and in the sandbox, run on the event loop.

FastAPI runs a plain `def` endpoint or dependency (a class included) in its thread pool: a hop
to a worker thread and back on every request, which a profile of the intake found for the
shared state (docs/performance.md, "Session 18")."""

import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import Mount

from api.main import create_app
from api.settings import ApiSettings
from sandbox.app import create_sandbox_app


def _on_the_loop(call: Any) -> bool:
    """What FastAPI awaits on the loop: a coroutine or async generator function, or an instance
    whose call is one; a class (its constructor) or a plain function goes to the pool."""
    if inspect.isclass(call):
        return False
    target = call if inspect.isroutine(call) else type(call).__call__
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        if isinstance(route, Mount):
            yield from _api_routes(route.routes)
        # FastAPI keeps an included router whole, behind a wrapper of its own.
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def _calls(dependant: Dependant) -> Iterator[Any]:
    if dependant.call is not None:
        yield dependant.call
    for child in dependant.dependencies:
        yield from _calls(child)


def _api(tmp_path: Path) -> FastAPI:
    return create_app(ApiSettings(database_url=f"sqlite:///{tmp_path / 'unused.db'}"))


def _sandbox(tmp_path: Path) -> FastAPI:
    return create_sandbox_app(data_dir=tmp_path)


@pytest.mark.parametrize(("make", "at_least"), [(_api, 30), (_sandbox, 40)], ids=["api", "sandbox"])
def test_no_route_sends_a_request_through_the_thread_pool(
    tmp_path: Path, make: Callable[[Path], FastAPI], at_least: int
) -> None:
    routes = list(_api_routes(make(tmp_path).routes))
    assert len(routes) > at_least

    in_threads = {
        f"{sorted(route.methods or ())} {route.path}: {getattr(call, '__qualname__', call)}"
        for route in routes
        for call in _calls(route.dependant)
        if not _on_the_loop(call)
    }

    assert in_threads == set()


def test_a_plain_function_or_class_is_told_apart() -> None:
    def plain() -> None:
        return None

    async def coroutine() -> None:
        return None

    class Guard:
        async def __call__(self) -> None:
            return None

    assert [_on_the_loop(c) for c in (plain, coroutine, Guard(), Guard)] == [
        False,
        True,
        True,
        False,
    ]
