"""What every HTTP adapter shares: tracing headers, the outbound guard, and one way of turning
transport failures and HTTP statuses into Retryable, Terminal and Conflict."""

import hashlib
import math
import secrets
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from orchestrator.client.tracing import current_traceparent
from orchestrator.connectors.errors import Conflict, ConnectorError, Retryable, Terminal
from orchestrator.connectors.ports import CallContext
from orchestrator.outbound import OutboundRefused, guarded_client, tls_context


def traceparent(correlation_id: str) -> str:
    """A W3C traceparent whose trace id is the correlation ID, so traces and lineage line up."""
    try:
        trace_id = uuid.UUID(correlation_id).hex
    except ValueError:
        trace_id = "0" * 32
    if trace_id == "0" * 32:
        # Not a UUID (or the nil one, which W3C forbids): still one stable trace per correlation.
        trace_id = hashlib.sha256(correlation_id.encode()).hexdigest()[:32]
    span_id = secrets.token_hex(8)
    while span_id == "0" * 16:
        span_id = secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01"


def trace_headers(ctx: CallContext) -> dict[str, str]:
    # The run's trace (the caller's, handed over at intake) when there is one.
    current = current_traceparent() or traceparent(ctx.correlation_id)
    return {"X-Correlation-ID": ctx.correlation_id, "traceparent": current}


def retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds from now, whether given as seconds or as an HTTP date."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def classify_status(
    response: httpx.Response, message: str, *, conflict: frozenset[int] = frozenset({409})
) -> ConnectorError:
    """The DESIGN.md error class for an answer that is not the success the call expected."""
    status = response.status_code
    if status in conflict:
        return Conflict(message, http_status=status)
    if status == 429:
        retry_after = retry_after_s(response.headers.get("Retry-After"))
        return Retryable(
            message, http_status=status, classification="rate_limit", retry_after_s=retry_after
        )
    if status == 408:
        return Retryable(message, http_status=status, classification="timeout")
    if status >= 500:
        # RFC 9110: a 503 may say when the service expects to be back; waiting less is wasted.
        hint = retry_after_s(response.headers.get("Retry-After")) if status == 503 else None
        return Retryable(message, http_status=status, classification="server", retry_after_s=hint)
    if status in (401, 403):
        return Terminal(message, http_status=status, classification="auth")
    if 400 <= status < 500:
        return Terminal(message, http_status=status, classification="validation")
    # A redirect or an unexpected 2xx: the contract is broken, and a retry would see the same.
    return Terminal(message, http_status=status, classification="protocol")


class HttpAdapter:
    """One vendor's base URL, pooled client and error dialect; raises connector errors only.

    With `allow` given (and no client), requests go through the outbound guard with that
    allow-list; an injected client is used as it is (the caller owns its policy).
    """

    def __init__(
        self,
        vendor: str,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
        allow: Sequence[str] | None = None,
        detail: Callable[[httpx.Response], str] = lambda r: r.text[:500],
        default_headers: dict[str, str] | None = None,
    ) -> None:
        self.vendor = vendor
        self.base_url = base_url.rstrip("/")
        self.timeout = httpx.Timeout(timeout_s)
        self.detail = detail
        self.default_headers = default_headers or {}
        self._owns_client = client is None
        if client is not None:
            self.client = client
        elif allow is not None:
            self.client = guarded_client(allow, timeout_s=timeout_s)
        else:
            self.client = httpx.AsyncClient(verify=tls_context(), follow_redirects=False)

    @classmethod
    def with_bearer(
        cls,
        vendor: str,
        base_url: str,
        *,
        token: str,
        timeout_s: float,
        client: httpx.AsyncClient | None,
        allow: Sequence[str] | None,
        detail: Callable[[httpx.Response], str],
    ) -> "HttpAdapter":
        """An adapter that sends `Authorization: Bearer <token>` when a token is configured."""
        return cls(
            vendor,
            base_url,
            timeout_s=timeout_s,
            client=client,
            allow=allow,
            detail=detail,
            default_headers={"Authorization": f"Bearer {token}"} if token else {},
        )

    def error(
        self, response: httpx.Response, action: str, *, conflict: frozenset[int] = frozenset({409})
    ) -> ConnectorError:
        message = f"{self.vendor} {action} answered {response.status_code}: {self.detail(response)}"
        return classify_status(response, message, conflict=conflict)

    def protocol_error(self, response: httpx.Response, action: str, what: str) -> Terminal:
        return Terminal(
            f"{self.vendor} {action} answered {response.status_code} {what}: {response.text[:500]}",
            http_status=response.status_code,
            classification="protocol",
        )

    def json(self, response: httpx.Response, action: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise self.protocol_error(response, action, "without JSON") from exc

    async def send(
        self,
        method: str,
        path: str,
        *,
        action: str,
        ctx: CallContext,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        all_headers = {**self.default_headers, **trace_headers(ctx), **(headers or {})}
        try:
            return await self.client.request(
                method,
                f"{self.base_url}{path}",
                headers=all_headers,
                timeout=self.timeout,
                follow_redirects=False,
                **kwargs,
            )
        except OutboundRefused as exc:
            raise Terminal(
                f"{self.vendor} {action} refused by the outbound guard: {exc}",
                classification="ssrf",
            ) from exc
        except httpx.TimeoutException as exc:
            raise Retryable(
                f"{self.vendor} {action} timed out: {exc!r}", classification="timeout"
            ) from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise Terminal(
                f"{self.vendor} base URL is unusable: {exc}", classification="config"
            ) from exc
        except httpx.TransportError as exc:
            raise Retryable(
                f"{self.vendor} {action} failed: {exc!r}", classification="connection"
            ) from exc
        except httpx.RequestError as exc:
            # E.g. an undecodable body after the server acted: the outcome is unknown.
            raise Retryable(
                f"{self.vendor} {action} failed: {exc!r}", classification="protocol"
            ) from exc

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()
