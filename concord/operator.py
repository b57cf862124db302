"""Operator commands go through the API, so roles and the audit trail hold for them too."""

import os
from typing import Any

import httpx
import typer


def api_client(api_url: str | None, key: str | None) -> httpx.Client:
    url = api_url or os.environ.get("CONCORD_API_URL", "http://127.0.0.1:8000")
    token = key or os.environ.get("CONCORD_API_KEY", "")
    if not token:
        typer.echo("an API key is needed: --key or CONCORD_API_KEY", err=True)
        raise typer.Exit(2)
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=600)


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


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False))
        for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)
