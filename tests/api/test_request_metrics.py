"""GET /metrics times every answer of the API under the route it matched."""

import json
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from lineage.enums import Role
from tests.api.helpers import auth
from tests.factories import new_invoice, signed_headers, stripe_event

FAMILY = "concord_api_request_duration_seconds"


def _histogram(exposition: str) -> dict[str, dict[tuple[str, str, str], float]]:
    """Sample name (`_count`, `_sum`, `_bucket` with its `le`) -> (method, route, status) -> value."""
    out: dict[str, dict[tuple[str, str, str], float]] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name != FAMILY:
            continue
        for sample in family.samples:
            name = sample.name.removeprefix(FAMILY)
            if name == "_bucket":
                name = f"_bucket le={sample.labels['le']}"
            labels = (sample.labels["method"], sample.labels["route"], sample.labels["status"])
            out.setdefault(name, {})[labels] = sample.value
    return out


async def test_each_answer_is_counted_under_its_route_template_and_status(
    client: httpx.AsyncClient, api_keys: dict[Role, str]
) -> None:
    viewer = auth(api_keys[Role.VIEWER])
    body = json.dumps(stripe_event(invoice=new_invoice())).encode()
    posted = await client.post("/v1/webhooks/stripe", content=body, headers=signed_headers(body))
    assert posted.status_code == 202
    found = await client.get(f"/v1/transactions/{posted.json()['correlation_id']}", headers=viewer)
    missing = await client.get("/v1/transactions/no-such-transaction", headers=viewer)
    nowhere = await client.get("/v1/no-such-route")
    assert (found.status_code, missing.status_code, nowhere.status_code) == (200, 404, 404)

    histogram = _histogram((await client.get("/metrics")).text)

    # IDs never become labels; a path no route matched is counted once under "unmatched".
    assert histogram["_count"] == {
        ("POST", "/v1/webhooks/stripe", "202"): 1.0,
        ("GET", "/v1/transactions/{correlation_id}", "200"): 1.0,
        ("GET", "/v1/transactions/{correlation_id}", "404"): 1.0,
        ("GET", "unmatched", "404"): 1.0,
    }
    # The 20 ms acknowledgement target is a bucket edge, so its share is read, not interpolated.
    assert ("POST", "/v1/webhooks/stripe", "202") in histogram["_bucket le=0.02"]


async def test_the_server_side_time_is_no_longer_than_the_caller_waited(
    client: httpx.AsyncClient,
) -> None:
    waited = []
    for _ in range(3):
        start = time.perf_counter()
        response = await client.get("/healthz")
        waited.append(time.perf_counter() - start)
        assert response.status_code == 200

    histogram = _histogram((await client.get("/metrics")).text)

    served = histogram["_sum"][("GET", "/healthz", "200")]
    assert histogram["_count"][("GET", "/healthz", "200")] == 3.0
    assert 0 < served <= sum(waited)
