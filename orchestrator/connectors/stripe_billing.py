"""The billing port over Stripe's REST API (the sandbox speaks the same dialect).

Billing is a source of truth, so this adapter reads: invoices by ID and by creation time (for
reconciliation), and customers by the external ID kept in metadata['external_id'].
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from lineage.enums import System
from orchestrator.client.canonical import Invoice, InvoiceLine
from orchestrator.connectors.errors import Terminal
from orchestrator.connectors.http import HttpAdapter
from orchestrator.connectors.ports import CallContext, TargetRecord


def _detail(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{error.get('type', '?')}: {error.get('message', '')}"
    except (ValueError, KeyError, TypeError):
        return response.text[:500]


def _when(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) else None


def to_invoice(obj: dict[str, Any]) -> Invoice:
    """A Stripe invoice object as Concord's canonical invoice (amounts stay in minor units)."""
    parent = obj.get("parent") or {}
    details = parent.get("subscription_details") or {}
    lines = (obj.get("lines") or {}).get("data") or []
    try:
        return Invoice(
            invoice_id=obj["id"],
            customer_id=obj["customer"]
            if isinstance(obj["customer"], str)
            else obj["customer"]["id"],
            subscription_id=details.get("subscription") or obj.get("subscription"),
            amount_minor=obj["total"],
            currency=str(obj["currency"]).upper(),
            period_start=_when(obj.get("period_start")),
            period_end=_when(obj.get("period_end")),
            lines=[
                InvoiceLine(
                    description=line.get("description"),
                    amount_minor=line["amount"],
                    quantity=line.get("quantity"),
                )
                for line in lines
            ],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise Terminal(
            f"Stripe invoice {obj.get('id')!r} cannot be read: {exc}", classification="protocol"
        ) from exc


class StripeBilling:
    """BillingConnector over Stripe; `api_key` is the secret key (sk_...)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str = "",
        timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
        allow: Sequence[str] | None = None,
        page_size: int = 100,
    ) -> None:
        self._page_size = page_size
        self._http = HttpAdapter.with_bearer(
            "Stripe",
            base_url,
            token=api_key,
            timeout_s=timeout_s,
            client=client,
            allow=allow,
            detail=_detail,
        )

    async def get_invoice(self, invoice_id: str, *, ctx: CallContext) -> Invoice | None:
        action = f"GET /v1/invoices/{invoice_id}"
        response = await self._http.send(
            "GET", f"/v1/invoices/{quote(invoice_id, safe='')}", action=action, ctx=ctx
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._http.error(response, action)
        return to_invoice(self._http.json(response, action))

    async def list_invoices(
        self, *, since: datetime, until: datetime, ctx: CallContext
    ) -> list[Invoice]:
        """Invoices created in [since, until), every page; drafts included, as Stripe lists them."""
        params: dict[str, str | int] = {
            "created[gte]": int(since.timestamp()),
            "created[lt]": int(until.timestamp()),
            "limit": self._page_size,
        }
        invoices: list[Invoice] = []
        action = "GET /v1/invoices"
        while True:
            response = await self._http.send(
                "GET", "/v1/invoices", action=action, ctx=ctx, params=params
            )
            if response.status_code != 200:
                raise self._http.error(response, action)
            page = self._http.json(response, action)
            data = page.get("data") or []
            invoices.extend(to_invoice(obj) for obj in data)
            if not page.get("has_more") or not data:
                return invoices
            params["starting_after"] = data[-1]["id"]

    async def find_customer(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        escaped = external_id.replace("\\", "\\\\").replace("'", "\\'")
        params = {"query": f"metadata['external_id']:'{escaped}'"}
        action = "GET /v1/customers/search"
        response = await self._http.send(
            "GET", "/v1/customers/search", action=action, ctx=ctx, params=params
        )
        if response.status_code != 200:
            raise self._http.error(response, action)
        data = self._http.json(response, action).get("data") or []
        if not data:
            return None
        return TargetRecord(System.BILLING, "customer", data[0]["id"], external_id, http_status=200)

    async def aclose(self) -> None:
        await self._http.aclose()
