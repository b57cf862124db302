"""Operator commands go through the API, so roles and the audit trail hold for them too."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import typer

DEFAULT_API_URL = "http://127.0.0.1:8000"


def api_url_of(api_url: str | None) -> str:
    return (api_url or os.environ.get("CONCORD_API_URL") or DEFAULT_API_URL).rstrip("/")


def api_client(api_url: str | None, key: str | None) -> httpx.Client:
    url = api_url_of(api_url)
    token = key or os.environ.get("CONCORD_API_KEY", "")
    if not token:
        typer.echo("an API key is needed: --key or CONCORD_API_KEY", err=True)
        raise typer.Exit(2)
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=600)


@contextmanager
def api_session(api_url: str | None, key: str | None) -> Iterator[httpx.Client]:
    """`api_client`, with an unreachable API reported in one line (exit 2), not a traceback."""
    with api_client(api_url, key) as client:
        try:
            yield client
        except httpx.TransportError as exc:
            typer.echo(f"cannot reach the API at {client.base_url}: {exc}", err=True)
            raise typer.Exit(2) from exc


def checked(response: httpx.Response) -> Any:
    """The JSON body, or exit 1 with the API's error code and message."""
    if response.is_success:
        return response.json()
    try:
        error = response.json()["error"]
        message = f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        message = response.text[:300]
    typer.echo(f"HTTP {response.status_code} {message}", err=True)
    raise typer.Exit(1)


def error_code(response: httpx.Response) -> str | None:
    """The API's error code of a failed response, if it has one."""
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


def cell(value: Any) -> str:
    """A table cell: '-' for nothing."""
    return "-" if value is None or value == "" else str(value)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(c).ljust(width) for c, width in zip(row, widths, strict=False))
        for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def age(seconds: float | None) -> str:
    """A duration for people: 45s, 12m, 3h 5m, 2d 4h."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"
