"""The billing port over Stripe's REST API (the sandbox speaks the same dialect).

Billing is a source of truth, so this adapter mostly reads: invoices by ID and by creation time
(for reconciliation), customers and subscriptions by the external ID kept in
metadata['external_id'], and prices by lookup key. It writes what quote-to-cash and renewal
risk need: customers and subscriptions (created once, under an Idempotency-Key, their external
ID in metadata so an ambiguous outcome is resolved by search) and subscription metadata.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from lineage.enums import System
from orchestrator.client.canonical import Invoice, InvoiceLine
from orchestrator.client.stripe_objects import line_pricing
from orchestrator.connectors.errors import Conflict, Retryable, Terminal
from orchestrator.connectors.http import HttpAdapter
from orchestrator.connectors.ports import CallContext, CustomerRecord, TargetRecord

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def form(params: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Stripe's form encoding: nested objects as a[b]=..., lists as a[0][b]=..."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if value is None:
            continue
        if isinstance(value, dict):
            pairs.extend(form(value, name))
        elif isinstance(value, list):
            for n, entry in enumerate(value):
                if isinstance(entry, dict):
                    pairs.extend(form(entry, f"{name}[{n}]"))
                else:
                    pairs.append((f"{name}[{n}]", str(entry)))
        elif isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        else:
            pairs.append((name, str(value)))
    return pairs


def _search_query(external_id: str) -> str:
    escaped = external_id.replace("\\", "\\\\").replace("'", "\\'")
    return f"metadata['external_id']:'{escaped}'"


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
                    **line_pricing(line),
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
        return await self._find("customer", external_id, ctx)

    async def find_subscription(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        return await self._find("subscription", external_id, ctx)

    async def find_price(self, lookup_key: str, *, ctx: CallContext) -> str | None:
        """The active price with this lookup key, as plans are named in mappings.toml."""
        action = f"GET /v1/prices?lookup_keys[]={lookup_key}"
        params = {"lookup_keys[0]": lookup_key, "active": "true", "limit": 1}
        response = await self._http.send("GET", "/v1/prices", action=action, ctx=ctx, params=params)
        if response.status_code != 200:
            raise self._http.error(response, action)
        data = self._http.json(response, action).get("data") or []
        return str(data[0]["id"]) if data else None

    async def create_customer(self, customer: CustomerRecord, *, ctx: CallContext) -> TargetRecord:
        """Create once; Conflict when a customer already carries this external ID."""
        params: dict[str, Any] = {
            "name": customer.name,
            "email": customer.email,
            "metadata": {"external_id": customer.external_id},
        }
        return await self._create("customer", params, customer.external_id, ctx)

    async def create_subscription(
        self,
        *,
        external_id: str,
        customer_id: str,
        items: Sequence[tuple[str, int]],
        metadata: dict[str, str],
        days_until_due: int | None,
        ctx: CallContext,
    ) -> TargetRecord:
        """Create once, `items` as (price ID, quantity); find_subscription after a doubt."""
        params: dict[str, Any] = {
            "customer": customer_id,
            "items": [{"price": price, "quantity": quantity} for price, quantity in items],
            "metadata": {**metadata, "external_id": external_id},
        }
        if days_until_due is not None:
            params["collection_method"] = "send_invoice"
            params["days_until_due"] = days_until_due
        return await self._create("subscription", params, external_id, ctx)

    async def update_subscription_metadata(
        self, subscription_id: str, metadata: dict[str, str], *, ctx: CallContext
    ) -> TargetRecord:
        """Set these metadata keys (others are kept); repeating it changes nothing more."""
        path = f"/v1/subscriptions/{quote(subscription_id, safe='')}"
        action = f"POST /v1/subscriptions/{subscription_id}"
        response = await self._http.send(
            "POST",
            path,
            action=action,
            ctx=ctx,
            content=urlencode(form({"metadata": metadata})),
            headers={**FORM, "Idempotency-Key": ctx.idempotency_key},
        )
        if response.status_code != 200:
            raise self._http.error(response, action)
        body = self._http.json(response, action)
        return TargetRecord(
            System.BILLING, "subscription", str(body["id"]), subscription_id, http_status=200
        )

    async def _find(self, kind: str, external_id: str, ctx: CallContext) -> TargetRecord | None:
        params = {"query": _search_query(external_id)}
        action = f"GET /v1/{kind}s/search"
        response = await self._http.send(
            "GET", f"/v1/{kind}s/search", action=action, ctx=ctx, params=params
        )
        if response.status_code != 200:
            raise self._http.error(response, action)
        data = self._http.json(response, action).get("data") or []
        if not data:
            return None
        return TargetRecord(System.BILLING, kind, data[0]["id"], external_id, http_status=200)

    async def _create(
        self, kind: str, params: dict[str, Any], external_id: str, ctx: CallContext
    ) -> TargetRecord:
        action = f"POST /v1/{kind}s"
        response = await self._http.send(
            "POST",
            f"/v1/{kind}s",
            action=action,
            ctx=ctx,
            content=urlencode(form(params)),
            headers={**FORM, "Idempotency-Key": ctx.idempotency_key},
        )
        if response.status_code == 400 and "metadata[external_id]" in response.text:
            raise Conflict(
                f"Stripe {action}: a {kind} with external ID {external_id} exists",
                http_status=400,
            )
        if response.status_code != 200:
            raise self._http.error(response, action)
        body = self._http.json(response, action)
        if not isinstance(body, dict) or not body.get("id"):
            # Billing may have created it: the caller looks it up rather than posting blind.
            raise Retryable(
                f"Stripe {action} answered 200 without an id", classification="protocol"
            )
        return TargetRecord(System.BILLING, kind, str(body["id"]), external_id, http_status=200)

    async def aclose(self) -> None:
        await self._http.aclose()
