"""The CRM port over HubSpot's CRM v3 objects API (the sandbox speaks the same dialect).

Records carry Concord's external ID in a unique `external_id` property, so companies and deals
are upserted with `batch/upsert` (idProperty=external_id) and any object is found with
`GET /crm/v3/objects/{type}/{id}?idProperty=external_id`. Deal amounts are strings in major
units, as HubSpot stores them, with `deal_currency_code`. Quote-to-cash reads deals, companies
and line items by HubSpot's own IDs with their associations (`?associations=companies,...`).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from lineage.enums import System
from orchestrator.connectors.errors import Retryable
from orchestrator.connectors.http import HttpAdapter
from orchestrator.connectors.money import to_major
from orchestrator.connectors.ports import (
    CallContext,
    CompanyRecord,
    DealRecord,
    TargetRecord,
    TaskRecord,
)

ID_PROPERTY = "external_id"


@dataclass(frozen=True, slots=True)
class CrmObject:
    """A CRM record as HubSpot answers it: string properties, associations as (id, type label)."""

    object_type: str
    object_id: str
    properties: dict[str, str]
    associations: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def linked(self, to_type: str, label: str | None = None) -> list[str]:
        """IDs associated by type (and label: parent_to_child_company, ...), once each."""
        ids = [i for i, t in self.associations.get(to_type, []) if label is None or t == label]
        return list(dict.fromkeys(ids))


def to_crm_object(object_type: str, obj: dict[str, Any]) -> CrmObject:
    props = obj.get("properties") or {}
    links: dict[str, list[tuple[str, str]]] = {}
    for to_type, listed in (obj.get("associations") or {}).items():
        links[to_type] = [(str(r["id"]), str(r.get("type", ""))) for r in listed.get("results", [])]
    return CrmObject(
        object_type,
        str(obj["id"]),
        {str(k): "" if v is None else str(v) for k, v in props.items()},
        links,
    )


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{body.get('category', '?')}: {body.get('message', '')}"
    except (ValueError, AttributeError):
        return response.text[:500]


def deal_properties(deal: DealRecord) -> dict[str, str]:
    props = {
        "dealname": deal.name,
        "amount": str(to_major(deal.amount_minor, deal.currency)),
        "deal_currency_code": deal.currency,
        "dealstage": deal.stage,
    }
    if deal.close_date:
        props["closedate"] = deal.close_date.isoformat()
    if deal.renewal_date:
        props["renewal_date"] = deal.renewal_date.isoformat()
    if deal.renewal_baseline_minor is not None:
        props["renewal_baseline"] = str(to_major(deal.renewal_baseline_minor, deal.currency))
    if deal.company_external_id:
        props["company_external_id"] = deal.company_external_id
    return props


class HubSpotCrm:
    """CrmConnector over HubSpot; `access_token` is a private app token."""

    def __init__(
        self,
        base_url: str,
        *,
        access_token: str = "",
        timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
        allow: Sequence[str] | None = None,
    ) -> None:
        self._http = HttpAdapter.with_bearer(
            "HubSpot",
            base_url,
            token=access_token,
            timeout_s=timeout_s,
            client=client,
            allow=allow,
            detail=_detail,
        )

    async def upsert_company(self, company: CompanyRecord, *, ctx: CallContext) -> TargetRecord:
        props = {"name": company.name, **({"domain": company.domain} if company.domain else {})}
        return await self._upsert("companies", company.external_id, props, ctx)

    async def upsert_deal(self, deal: DealRecord, *, ctx: CallContext) -> TargetRecord:
        return await self._upsert("deals", deal.external_id, deal_properties(deal), ctx)

    async def create_task(self, task: TaskRecord, *, ctx: CallContext) -> TargetRecord:
        """Create a task; Conflict if one with this external ID exists (look it up instead)."""
        props = {
            ID_PROPERTY: task.external_id,
            "hs_task_subject": task.subject,
            "hs_task_body": task.body,
            "hs_task_priority": task.priority,
            "hs_task_status": "NOT_STARTED",
        }
        if task.due is not None:
            props["hs_timestamp"] = task.due.isoformat()
        action = "POST /crm/v3/objects/tasks"
        response = await self._http.send(
            "POST", "/crm/v3/objects/tasks", action=action, ctx=ctx, json={"properties": props}
        )
        if response.status_code != 201:
            raise self._http.error(response, action)
        return self._record("tasks", self._http.json(response, action), task.external_id, 201)

    async def find(
        self, object_type: str, external_id: str, *, ctx: CallContext
    ) -> TargetRecord | None:
        path = f"/crm/v3/objects/{object_type}/{quote(external_id, safe='')}"
        action = f"GET /crm/v3/objects/{object_type}/{external_id}?idProperty={ID_PROPERTY}"
        response = await self._http.send(
            "GET", path, action=action, ctx=ctx, params={"idProperty": ID_PROPERTY}
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._http.error(response, action)
        return self._record(object_type, self._http.json(response, action), external_id, 200)

    async def read(
        self,
        object_type: str,
        object_id: str,
        *,
        associations: Sequence[str] = (),
        by_external_id: bool = False,
        ctx: CallContext,
    ) -> CrmObject | None:
        """One record by HubSpot's ID (or by Concord's external ID) with its associations;
        None when it does not exist."""
        path = f"/crm/v3/objects/{object_type}/{quote(object_id, safe='')}"
        params = {"associations": ",".join(associations)} if associations else {}
        if by_external_id:
            params["idProperty"] = ID_PROPERTY
        action = f"GET /crm/v3/objects/{object_type}/{object_id}"
        response = await self._http.send("GET", path, action=action, ctx=ctx, params=params)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._http.error(response, action)
        try:
            return to_crm_object(object_type, self._http.json(response, action))
        except (KeyError, TypeError, AttributeError) as exc:
            raise self._http.protocol_error(response, action, "without a record") from exc

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _upsert(
        self, object_type: str, external_id: str, props: dict[str, str], ctx: CallContext
    ) -> TargetRecord:
        path = f"/crm/v3/objects/{object_type}/batch/upsert"
        action = f"POST {path}"
        body = {"inputs": [{"idProperty": ID_PROPERTY, "id": external_id, "properties": props}]}
        response = await self._http.send("POST", path, action=action, ctx=ctx, json=body)
        if response.status_code != 200:
            raise self._http.error(response, action)
        results = self._http.json(response, action).get("results") or []
        if len(results) != 1:
            # HubSpot may answer 207 or a partial batch: the outcome is unknown, look it up.
            raise Retryable(
                f"HubSpot {action} answered without exactly one result",
                http_status=200,
                classification="protocol",
            )
        return self._record(object_type, results[0], external_id, 200)

    def _record(
        self, object_type: str, obj: dict[str, Any], external_id: str, status: int
    ) -> TargetRecord:
        return TargetRecord(
            System.CRM, object_type, str(obj.get("id")), external_id, http_status=status
        )
