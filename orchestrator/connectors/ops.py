"""The provisioning port (the sandbox's tenant API) and the support port over Zendesk's ticket
API. Both are idempotent by external ID on the vendor side: a repeat answers the same record."""

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from lineage.enums import System
from orchestrator.connectors.http import HttpAdapter
from orchestrator.connectors.ports import CallContext, TargetRecord, TenantRecord, TicketRecord


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{body.get('error', '?')}: {body.get('description', '')}"
    except (ValueError, AttributeError):
        return response.text[:500]


class TenantProvisioning:
    """ProvisioningConnector: PUT /v1/tenants/{external_id} sets name, plan and enabled."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str = "",
        timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
        allow: Sequence[str] | None = None,
    ) -> None:
        self._http = HttpAdapter.with_bearer(
            "Provisioning",
            base_url,
            token=api_key,
            timeout_s=timeout_s,
            client=client,
            allow=allow,
            detail=_detail,
        )

    async def set_tenant(self, tenant: TenantRecord, *, ctx: CallContext) -> TargetRecord:
        path = f"/v1/tenants/{quote(tenant.external_id, safe='')}"
        action = f"PUT /v1/tenants/{tenant.external_id}"
        body = {"name": tenant.name, "plan": tenant.plan, "enabled": tenant.enabled}
        headers = {"Idempotency-Key": ctx.idempotency_key}
        response = await self._http.send(
            "PUT", path, action=action, ctx=ctx, json=body, headers=headers
        )
        if response.status_code not in (200, 201):
            raise self._http.error(response, action)
        return self._record(
            self._http.json(response, action), tenant.external_id, response.status_code
        )

    async def find_tenant(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        action = f"GET /v1/tenants/{external_id}"
        response = await self._http.send(
            "GET", f"/v1/tenants/{quote(external_id, safe='')}", action=action, ctx=ctx
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._http.error(response, action)
        return self._record(self._http.json(response, action), external_id, 200)

    def _record(self, body: dict[str, Any], external_id: str, status: int) -> TargetRecord:
        return TargetRecord(
            System.PROVISIONING,
            "tenant",
            str(body["tenant"]["id"]),
            external_id,
            http_status=status,
        )

    async def aclose(self) -> None:
        await self._http.aclose()


class ZendeskSupport:
    """SupportConnector over Zendesk: tickets carry Concord's ID in Zendesk's own external_id."""

    def __init__(
        self,
        base_url: str,
        *,
        api_token: str = "",
        timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
        allow: Sequence[str] | None = None,
    ) -> None:
        self._http = HttpAdapter.with_bearer(
            "Zendesk",
            base_url,
            token=api_token,
            timeout_s=timeout_s,
            client=client,
            allow=allow,
            detail=_detail,
        )

    async def open_ticket(self, ticket: TicketRecord, *, ctx: CallContext) -> TargetRecord:
        body = {
            "ticket": {
                "external_id": ticket.external_id,
                "subject": ticket.subject,
                "comment": {"body": ticket.body},
                "priority": ticket.priority,
                "tags": list(ticket.tags),
            }
        }
        action = "POST /api/v2/tickets"
        headers = {"Idempotency-Key": ctx.idempotency_key}
        response = await self._http.send(
            "POST", "/api/v2/tickets", action=action, ctx=ctx, json=body, headers=headers
        )
        if response.status_code not in (200, 201):
            raise self._http.error(response, action)
        return self._record(
            self._http.json(response, action)["ticket"], ticket.external_id, response.status_code
        )

    async def find_ticket(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        action = f"GET /api/v2/tickets?external_id={external_id}"
        response = await self._http.send(
            "GET", "/api/v2/tickets", action=action, ctx=ctx, params={"external_id": external_id}
        )
        if response.status_code != 200:
            raise self._http.error(response, action)
        tickets = self._http.json(response, action).get("tickets") or []
        return self._record(tickets[0], external_id, 200) if tickets else None

    def _record(self, ticket: dict[str, Any], external_id: str, status: int) -> TargetRecord:
        return TargetRecord(
            System.SUPPORT, "ticket", str(ticket["id"]), external_id, http_status=status
        )

    async def aclose(self) -> None:
        await self._http.aclose()
