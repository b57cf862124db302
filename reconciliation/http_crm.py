"""CRM deal amounts over HubSpot's CRM v3 search API.

Concord keeps each deal's subscription in the deal's unique `external_id` property (see
orchestrator/targets_http.py), so a deal without one was not made by Concord and has no
billing counterpart to compare. Amounts are strings in major units of `deal_currency_code`.
"""

from typing import Any

from reconciliation.errors import SourceError
from reconciliation.http_pages import PageReader, to_minor
from reconciliation.sources import Snapshot, from_rows

_PROPERTIES = ["amount", "deal_currency_code", "external_id"]
# HubSpot's search answers at most 200 objects a page.
_PAGE = 200


class CrmReader:
    def __init__(self, base_url: str, pages: PageReader) -> None:
        self._base = base_url.rstrip("/")
        self._pages = pages

    async def deals(self) -> Any:
        rows = []
        body: dict[str, Any] = {
            "filterGroups": [
                {"filters": [{"propertyName": "external_id", "operator": "HAS_PROPERTY"}]}
            ],
            "properties": _PROPERTIES,
            "limit": _PAGE,
        }
        while True:
            page = await self._pages.post(f"{self._base}/crm/v3/objects/deals/search", body)
            for deal in page["results"]:
                props = deal.get("properties") or {}
                currency = (props.get("deal_currency_code") or "").upper() or None
                amount = props.get("amount")
                if amount in (None, "") or currency is None:
                    # A deal without an amount has no value to disagree with.
                    continue
                try:
                    minor = to_minor(amount, currency)
                except SourceError as exc:
                    raise SourceError(f"deal {deal['id']}: {exc}") from exc
                rows.append((str(deal["id"]), props["external_id"], minor, currency))
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return from_rows("crm_deals", rows)
            body["after"] = after

    async def fetch(self) -> Snapshot:
        return {"crm_deals": await self.deals()}
