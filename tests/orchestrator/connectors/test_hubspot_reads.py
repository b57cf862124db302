"""HubSpot reads for quote-to-cash: records by HubSpot ID with their associations, over HTTP."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from orchestrator.connectors.errors import Retryable
from orchestrator.connectors.hubspot import HubSpotCrm
from tests.orchestrator.connectors.conftest import LOOPBACK, ctx, set_faults


@pytest.fixture
async def crm(sandbox: str) -> AsyncIterator[HubSpotCrm]:
    connector = HubSpotCrm(f"{sandbox}/crm", access_token="pat-x", allow=LOOPBACK)
    yield connector
    await connector.aclose()


def _create(sandbox: str, object_type: str, properties: dict[str, str], links: Any = ()) -> str:
    body: dict[str, Any] = {"properties": properties}
    if links:
        body["associations"] = [
            {
                "to": {"id": to},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": t}],
            }
            for to, t in links
        ]
    response = httpx.post(f"{sandbox}/crm/crm/v3/objects/{object_type}", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_reads_a_deal_its_company_hierarchy_and_line_items(
    crm: HubSpotCrm, sandbox: str
) -> None:
    parent = _create(sandbox, "companies", {"name": "Group", "tax_region": "EU"})
    child = _create(sandbox, "companies", {"name": "Child"}, [(parent, 14)])
    line = _create(sandbox, "line_items", {"hs_product_id": "9002", "quantity": "3"})
    deal = _create(sandbox, "deals", {"dealname": "Won"}, [(child, 5), (line, 19)])

    read_deal = await crm.read("deals", deal, associations=("companies", "line_items"), ctx=ctx())
    read_child = await crm.read("companies", child, associations=("companies",), ctx=ctx())
    read_parent = await crm.read("companies", parent, associations=("companies",), ctx=ctx())
    bare = await crm.read("line_items", line, ctx=ctx())
    missing = await crm.read("deals", "999999", ctx=ctx())

    assert read_deal is not None
    assert read_deal.properties["dealname"] == "Won"
    assert read_deal.linked("companies") == [child]
    assert read_deal.linked("line_items") == [line]
    assert read_child is not None
    assert read_child.linked("companies", "child_to_parent_company") == [parent]
    assert read_parent is not None
    # HubSpot answers the inverse association on the other side.
    assert read_parent.linked("companies", "parent_to_child_company") == [child]
    assert read_parent.linked("companies", "child_to_parent_company") == []
    assert bare is not None
    assert (bare.properties["quantity"], bare.associations) == ("3", {})
    assert missing is None


async def test_a_failing_read_is_retryable(crm: HubSpotCrm, sandbox: str) -> None:
    set_faults(sandbox, "crm:503=1")

    with pytest.raises(Retryable):
        await crm.read("deals", "1001", ctx=ctx())


def test_an_association_to_nothing_is_refused(sandbox: str) -> None:
    body = {
        "properties": {"dealname": "x"},
        "associations": [
            {"to": {"id": "424242"}, "types": [{"associationTypeId": 5}]},
        ],
    }

    response = httpx.post(f"{sandbox}/crm/crm/v3/objects/deals", json=body)

    assert response.status_code == 404
    assert response.json()["message"] == "associations[0]: companies 424242 does not exist"


async def test_reads_a_company_by_concords_external_id(crm: HubSpotCrm, sandbox: str) -> None:
    company = _create(
        sandbox, "companies", {"name": "Acme", "external_id": "cus_9", "industry": "SOFTWARE"}
    )
    _create(sandbox, "deals", {"dealname": "Acme annual"}, [(company, 5)])

    found = await crm.read(
        "companies", "cus_9", associations=("deals",), by_external_id=True, ctx=ctx()
    )
    by_crm_id = await crm.read("companies", "cus_9", ctx=ctx())

    assert found is not None
    assert (found.object_id, found.properties["industry"]) == (company, "SOFTWARE")
    assert len(found.linked("deals")) == 1
    assert by_crm_id is None  # without idProperty, "cus_9" is not a HubSpot ID
