"""The Segment-shaped analytics sandbox: write-key auth, validation, messageId dedupe, faults."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.settings import OrchestratorSettings
from sandbox.analytics import DEFAULT_WRITE_KEY
from sandbox.app import create_sandbox_app
from tests.support.servers import serve_in_thread

WRITE_KEY = "wk_test_analytics"
AUTH = (WRITE_KEY, "")
TRACK = "/analytics/v1/track"


def event(message_id: str = "m-1", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "userId": "cus_1",
        "event": "Subscription Amended",
        "properties": {"plan": "pro", "quantity": 3},
        "timestamp": "2026-11-01T12:00:00Z",
        "messageId": message_id,
        "context": {"library": {"name": "test"}},
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def kept(client: httpx.Client, **params: str) -> list[dict[str, Any]]:
    response = client.get("/analytics/_admin/events", params=params)
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


@pytest.fixture
def sandbox() -> Iterator[httpx.Client]:
    app = create_sandbox_app(faults="", analytics_write_key=WRITE_KEY)
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as client:
        yield client


def test_track_needs_the_write_key_as_basic_user(sandbox: httpx.Client) -> None:
    anonymous = sandbox.post(TRACK, json=event())
    wrong = sandbox.post(TRACK, json=event(), auth=("wk_other", ""))
    bearer = sandbox.post(TRACK, json=event(), headers={"Authorization": f"Bearer {WRITE_KEY}"})
    right = sandbox.post(TRACK, json=event(), auth=AUTH)

    assert [r.status_code for r in (anonymous, wrong, bearer)] == [401, 401, 401]
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    assert (right.status_code, right.json()) == (200, {"success": True})
    assert [e["messageId"] for e in kept(sandbox)] == ["m-1"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (event(userId=None), "userId or anonymousId"),
        (event(userId=""), "userId or anonymousId"),
        (event(event=None), "event is required"),
        (event(properties=["plan"]), "properties must be an object"),
        (event(messageId="m" * 101), "messageId"),
        (event(timestamp="last tuesday"), "timestamp"),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_an_invalid_call_is_400_and_kept_nowhere(
    sandbox: httpx.Client, body: object, says: str
) -> None:
    response = sandbox.post(TRACK, json=body, auth=AUTH)

    assert response.status_code == 400
    assert response.json()["success"] is False
    assert says in response.json()["message"]
    assert kept(sandbox) == []


def test_malformed_and_oversized_bodies_are_400(sandbox: httpx.Client) -> None:
    malformed = sandbox.post(
        TRACK, content=b"{not json", headers={"Content-Type": "application/json"}, auth=AUTH
    )
    oversized = sandbox.post(TRACK, json=event(properties={"blob": "x" * 33_000}), auth=AUTH)

    assert (malformed.status_code, oversized.status_code) == (400, 400)
    assert "32768" in oversized.json()["message"]
    assert kept(sandbox) == []


def test_anonymous_id_is_enough_and_a_missing_message_id_is_made_up(
    sandbox: httpx.Client,
) -> None:
    body = event(userId=None, anonymousId="anon-1", messageId=None, timestamp=None)

    assert sandbox.post(TRACK, json=body, auth=AUTH).status_code == 200
    [stored] = kept(sandbox)
    assert stored["anonymousId"] == "anon-1"
    assert stored["messageId"].startswith("api-")
    assert stored["timestamp"] == stored["receivedAt"]


def test_a_message_id_is_kept_once_however_often_it_is_sent(sandbox: httpx.Client) -> None:
    first = sandbox.post(TRACK, json=event("m-1"), auth=AUTH, headers={"X-Correlation-ID": "c1"})
    # A retry may carry a newer timestamp or properties: Segment keeps the first it saw.
    repeat = sandbox.post(TRACK, json=event("m-1", properties={"plan": "other"}), auth=AUTH)
    other = sandbox.post(TRACK, json=event("m-2"), auth=AUTH)

    assert [r.json() for r in (first, repeat, other)] == [{"success": True}] * 3
    assert [e["messageId"] for e in kept(sandbox)] == ["m-1", "m-2"]
    [only] = kept(sandbox, messageId="m-1")
    assert (only["type"], only["userId"], only["event"]) == ("track", "cus_1", event()["event"])
    assert (only["properties"], only["correlation_id"]) == ({"plan": "pro", "quantity": 3}, "c1")
    assert kept(sandbox, userId="cus_2") == []
    ledger = sandbox.get("/analytics/_admin/ledger").json()["records"]
    assert [(r["id"], r["create_calls"]) for r in ledger] == [("m-1", 2), ("m-2", 1)]


def test_a_write_key_in_the_body_is_not_kept(sandbox: httpx.Client) -> None:
    sandbox.post(TRACK, json={**event(), "writeKey": WRITE_KEY}, auth=AUTH)

    [stored] = kept(sandbox)
    assert "writeKey" not in json.dumps(stored)


def test_faults_reach_track_and_spare_the_admin_paths(sandbox: httpx.Client) -> None:
    set_faults = sandbox.post("/analytics/_admin/faults", json={"faults": "analytics.track:503=1"})
    assert set_faults.status_code == 200

    refused = sandbox.post(TRACK, json=event(), auth=AUTH)

    assert refused.status_code == 503
    assert refused.json()["success"] is False
    # Nothing was written, and the sandbox-only reads still answer under the fault.
    assert kept(sandbox) == []

    sandbox.post(
        "/analytics/_admin/faults", json={"faults": "analytics:429=1,analytics:retry_after=7"}
    )
    limited = sandbox.post(TRACK, json=event(), auth=AUTH)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")


def test_commit_then_drop_keeps_the_event_and_the_retry_adds_nothing(
    sandbox: httpx.Client,
) -> None:
    sandbox.post("/analytics/_admin/faults", json={"faults": "analytics:drop_after_commit=1"})

    with pytest.raises(httpx.TransportError):
        sandbox.post(TRACK, json=event("m-1"), auth=AUTH)
    sandbox.post("/analytics/_admin/faults", json={"faults": ""})
    retried = sandbox.post(TRACK, json=event("m-1"), auth=AUTH)

    assert retried.json() == {"success": True}
    assert [e["messageId"] for e in kept(sandbox)] == ["m-1"]


def test_events_survive_a_restart_with_a_data_directory(tmp_path: Path) -> None:
    for _ in range(2):
        app = create_sandbox_app(data_dir=tmp_path, faults="", analytics_write_key=WRITE_KEY)
        with serve_in_thread(app) as url, httpx.Client(base_url=url) as client:
            assert client.post(TRACK, json=event("m-1"), auth=AUTH).status_code == 200
            events = kept(client)

    assert [e["messageId"] for e in events] == ["m-1"]
    assert (tmp_path / "analytics.sqlite3").exists()


def test_the_default_write_key_is_the_workers_default() -> None:
    # The worker cannot import the sandbox: its default is a copy, kept equal here.
    default = OrchestratorSettings.model_fields["analytics_write_key"].default
    assert default == DEFAULT_WRITE_KEY
