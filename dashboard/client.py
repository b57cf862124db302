"""The dashboard's only way to Concord: its public HTTP API, with the signed-in user's bearer.

Every read and action goes through here, so roles and the audit log hold in one place (the
API). Errors carry the API's own `{"error": {"code", "message", "details"}}`.
"""

from dataclasses import dataclass, field
from typing import Any

import httpx

JSON = dict[str, Any]
# FastAPI answers an unknown route with this message; a missing record has its own message.
_ROUTE_MISSING_MESSAGE = "Not Found"


class ApiError(Exception):
    """A non-2xx answer, or no answer at all (status 0)."""

    def __init__(self, status: int, code: str, message: str, details: JSON | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}

    @property
    def unavailable(self) -> bool:
        """This API has no such endpoint (yet): the page shows an unavailable state."""
        return self.status in (404, 405) and self.message in (
            _ROUTE_MISSING_MESSAGE,
            "Method Not Allowed",
        )

    @property
    def forbidden(self) -> bool:
        return self.status == 403


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        details = err.get("details")
        return ApiError(
            response.status_code,
            str(err.get("code", "error")),
            str(err.get("message", "")),
            details if isinstance(details, dict) else {"details": details},
        )
    if isinstance(body, dict) and "detail" in body:
        return ApiError(response.status_code, "http_error", str(body["detail"]))
    return ApiError(
        response.status_code, "http_error", response.text[:300] or response.reason_phrase
    )


@dataclass
class ConcordClient:
    """A thin, typed-enough wrapper: one method per endpoint the dashboard uses."""

    base_url: str
    token: str
    timeout_s: float = 15.0
    http: httpx.Client | None = field(default=None, repr=False)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        auth: bool = True,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = {**(headers or {}), **({"Authorization": f"Bearer {self.token}"} if auth else {})}
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "", [])}
        try:
            if self.http is not None:
                response = self.http.request(
                    method, f"{self.base_url}{path}", params=clean, json=body, headers=headers
                )
            else:
                with httpx.Client(timeout=self.timeout_s) as http:
                    response = http.request(
                        method, f"{self.base_url}{path}", params=clean, json=body, headers=headers
                    )
        except httpx.HTTPError as exc:
            raise ApiError(
                0, "unreachable", f"the Concord API at {self.base_url} did not answer: {exc}"
            ) from exc
        if response.status_code >= 400:
            raise _error(response)
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params=params).json()

    def post(self, path: str, body: Any) -> Any:
        return self._request("POST", path, body=body).json()

    # Identity -----------------------------------------------------------------------------

    def me(self) -> JSON:
        result: JSON = self.get("/v1/me")
        return result

    def probe(self, method: str, path: str, body: Any = None) -> int:
        """The status of a call, for role probing; never raises for an HTTP status."""
        try:
            return self._request(method, path, body=body).status_code
        except ApiError as exc:
            return exc.status

    # Reads ---------------------------------------------------------------------------------

    def openapi_paths(self) -> dict[str, list[str]]:
        spec = self._request("GET", "/openapi.json", auth=False).json()
        return {p: sorted(m.upper() for m in ops) for p, ops in spec.get("paths", {}).items()}

    def metrics_text(self) -> str:
        return self._request("GET", "/metrics", auth=False).text

    def transactions(self, **filters: Any) -> JSON:
        result: JSON = self.get("/v1/transactions", **filters)
        return result

    def transaction(self, correlation_id: str) -> JSON:
        result: JSON = self.get(f"/v1/transactions/{correlation_id}")
        return result

    def lineage(self, correlation_id: str) -> JSON:
        result: JSON = self.get(f"/v1/lineage/{correlation_id}")
        return result

    def search(self, q: str, limit: int = 50) -> JSON:
        result: JSON = self.get("/v1/search", q=q, limit=limit)
        return result

    def exceptions(self, **filters: Any) -> JSON:
        result: JSON = self.get("/v1/exceptions", **filters)
        return result

    # The API shares SLA figures among callers for a few seconds; `fresh` asks for figures
    # read after the request (Cache-Control: no-cache), for a user's explicit refresh.
    def sla_summary(self, window: str, group_by: str = "workflow", *, fresh: bool = False) -> JSON:
        params = {"window": window, "group_by": group_by}
        return self._sla("/v1/sla/summary", params, fresh=fresh)

    def sla_timeseries(
        self, window: str, bucket: str, workflow: str | None = None, *, fresh: bool = False
    ) -> JSON:
        params = {"window": window, "bucket": bucket, "workflow": workflow}
        return self._sla("/v1/sla/timeseries", params, fresh=fresh)

    def _sla(self, path: str, params: dict[str, Any], *, fresh: bool) -> JSON:
        headers = {"Cache-Control": "no-cache"} if fresh else None
        result: JSON = self._request("GET", path, params=params, headers=headers).json()
        return result

    def operations(self) -> JSON:
        result: JSON = self.get("/v1/operations")
        return result

    def audit(self, **filters: Any) -> JSON:
        result: JSON = self.get("/v1/audit", **filters)
        return result

    def bulk_replays(self, limit: int = 20) -> list[JSON]:
        result: list[JSON] = self.get("/v1/replays", limit=limit)
        return result

    def bulk_replay(self, bulk_id: int) -> JSON:
        result: JSON = self.get(f"/v1/replays/{bulk_id}")
        return result

    def reconciliation_runs(self, **filters: Any) -> Any:
        return self.get("/v1/reconciliation/runs", **filters)

    def reconciliation_run(self, run_id: str) -> JSON:
        result: JSON = self.get(f"/v1/reconciliation/runs/{run_id}")
        return result

    def mismatches(self, **filters: Any) -> Any:
        return self.get("/v1/mismatches", **filters)

    def mismatches_csv(self, **filters: Any) -> str:
        return self._request("GET", "/v1/mismatches", params={**filters, "format": "csv"}).text

    # Actions (every one audited by the API under the signed-in key) -------------------------

    def replay(
        self,
        correlation_id: str,
        *,
        reason: str,
        from_step: str | None = None,
        payload: JSON | None = None,
    ) -> JSON:
        body: JSON = {"reason": reason}
        if from_step:
            body["from_step"] = from_step
        if payload is not None:
            body["payload"] = payload
        result: JSON = self.post(f"/v1/transactions/{correlation_id}/replay", body)
        return result

    def resolve(self, correlation_id: str, *, resolution: str, note: str) -> JSON:
        result: JSON = self.post(
            f"/v1/transactions/{correlation_id}/resolve", {"resolution": resolution, "note": note}
        )
        return result

    def assign(self, exception_id: int, owner: str | None) -> JSON:
        result: JSON = self.post(f"/v1/exceptions/{exception_id}/assign", {"owner": owner})
        return result

    def bulk_replay_create(
        self,
        flt: JSON,
        *,
        dry_run: bool,
        expected_count: int | None = None,
        reason: str | None = None,
        name: str | None = None,
    ) -> JSON:
        body: JSON = {"filter": flt, "dry_run": dry_run}
        if not dry_run:
            body.update(expected_count=expected_count, reason=reason, name=name)
        result: JSON = self.post("/v1/replays", body)
        return result

    def bulk_replay_cancel(self, bulk_id: int) -> JSON:
        result: JSON = self.post(f"/v1/replays/{bulk_id}/cancel", {})
        return result

    def reconciliation_start(self, body: JSON) -> JSON:
        """Start a run and answer it as soon as it has begun (a run can outlast the timeout)."""
        response = self._request(
            "POST", "/v1/reconciliation/runs", body=body, headers={"Prefer": "respond-async"}
        )
        result: JSON = response.json()
        return result

    def mismatch_resolve(self, mismatch_id: str, *, note: str) -> JSON:
        result: JSON = self.post(f"/v1/mismatches/{mismatch_id}/resolve", {"note": note})
        return result

    def mismatch_replay(self, mismatch_id: str, *, reason: str) -> JSON:
        result: JSON = self.post(f"/v1/mismatches/{mismatch_id}/replay", {"reason": reason})
        return result
