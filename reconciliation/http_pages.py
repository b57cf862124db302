"""Reading list endpoints over HTTP: pages retried on rate limits and outages, exact money.

Amounts arrive in major units from NetSuite and HubSpot and are converted exactly to minor
units; a sub-minor amount is a SourceError, never rounded.
"""

import asyncio
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from reconciliation.errors import SourceError

# ISO 4217 exponents other than 2 (the ERP and billing agree on this table).
# fmt: off
_ZERO_DECIMAL = frozenset({
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG",
    "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF",
})
# fmt: on
_THREE_DECIMAL = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})
_ATTEMPTS = 5
_TRANSIENT = {429, 500, 502, 503, 504}


def to_minor(amount: Any, currency: str) -> int:
    digits = 0 if currency in _ZERO_DECIMAL else 3 if currency in _THREE_DECIMAL else 2
    try:
        # repr() keeps 10.05 as 10.05 rather than its binary neighbour.
        minor = Decimal(repr(amount) if isinstance(amount, float) else str(amount)).scaleb(digits)
    except InvalidOperation as exc:
        raise SourceError(f"{amount!r} is not an amount") from exc
    if not minor.is_finite() or minor != minor.to_integral_value():
        raise SourceError(f"{amount} {currency} is finer than the currency's minor unit")
    return int(minor)


def _backoff_s(attempt: int, retry_after: str | None) -> float:
    # A snapshot is read once per run: waiting a little beats failing the whole run.
    try:
        hinted = float(retry_after) if retry_after else 0.0
    except ValueError:
        hinted = 0.0
    return min(10.0, max(hinted, 0.2 * 2.0 ** (attempt - 1)))


class PageReader:
    """One system's pages: GET (or POST, for search APIs) with retries, JSON objects back."""

    def __init__(self, client: httpx.AsyncClient, *, token: str | None = None) -> None:
        self._client = client
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def get(self, url: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self._send("GET", url, params=params)

    async def post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._send("POST", url, json=body)

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Rate limits, 5xx and dropped connections are retried a few times."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                response = await self._client.request(
                    method, url, params=params, json=json, headers=self._headers
                )
            except httpx.HTTPError as exc:
                if attempt == _ATTEMPTS:
                    raise SourceError(f"{method} {url} failed: {exc!r}") from exc
                await asyncio.sleep(_backoff_s(attempt, None))
                continue
            if response.status_code == 200:
                body: dict[str, Any] = response.json()
                return body
            if response.status_code not in _TRANSIENT or attempt == _ATTEMPTS:
                raise SourceError(
                    f"{method} {url} answered {response.status_code}: {response.text[:300]}"
                )
            await asyncio.sleep(_backoff_s(attempt, response.headers.get("retry-after")))
        raise AssertionError("unreachable")
