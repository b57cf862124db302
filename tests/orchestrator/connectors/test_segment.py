"""The Segment connector (and the analytics port over it) against the sandbox over real HTTP."""

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from lineage.enums import System
from orchestrator.connectors.errors import Retryable, Terminal
from orchestrator.connectors.ports import CallContext
from orchestrator.connectors.segment import MAX_MESSAGE_ID, SegmentAnalytics, TrackEvent
from orchestrator.targets_analytics import SegmentEvents
from sandbox.app import create_sandbox_app
from tests.orchestrator.connectors.conftest import CORRELATION_ID, LOOPBACK, ctx, set_faults
from tests.support.servers import serve_in_thread

WRITE_KEY = "wk_test_segment"
AMENDED = TrackEvent(
    user_id="cus_1",
    event="Subscription Amended",
    external_id="sub_1",
    properties={"plan": "pro", "quantity": 3, "value_minor": 360_000},
    timestamp=datetime(2026, 11, 1, 13, 0, tzinfo=timezone(timedelta(hours=1))),
)


@pytest.fixture
def sandbox() -> Iterator[str]:
    # Its own sandbox, so the write key does not depend on the environment's.
    with serve_in_thread(create_sandbox_app(faults="", analytics_write_key=WRITE_KEY)) as url:
        yield url


@pytest.fixture
async def segment(sandbox: str) -> AsyncIterator[SegmentAnalytics]:
    connector = SegmentAnalytics(f"{sandbox}/analytics", write_key=WRITE_KEY, allow=LOOPBACK)
    yield connector
    await connector.aclose()


def events(sandbox: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = httpx.get(f"{sandbox}/analytics/_admin/events").json()["events"]
    return found


async def test_track_sends_the_idempotency_key_as_message_id(
    segment: SegmentAnalytics, sandbox: str
) -> None:
    record = await segment.track(AMENDED, ctx=ctx("analytics.track"))

    key = f"{CORRELATION_ID}:analytics.track"
    assert (record.system, record.object_type, record.record_id) == (System.ANALYTICS, "track", key)
    assert (record.external_id, record.http_status) == ("sub_1", 200)
    [sent] = events(sandbox)
    assert (sent["messageId"], sent["userId"], sent["event"]) == (key, "cus_1", AMENDED.event)
    assert sent["properties"] == {"plan": "pro", "quantity": 3, "value_minor": 360_000}
    assert sent["timestamp"] == "2026-11-01T12:00:00Z"
    assert sent["context"]["externalId"] == "sub_1"
    assert sent["correlation_id"] == CORRELATION_ID


async def test_a_repeat_is_not_a_second_event(segment: SegmentAnalytics, sandbox: str) -> None:
    first = await segment.track(AMENDED, ctx=ctx("analytics.track"))
    repeat = await segment.track(AMENDED, ctx=ctx("analytics.track"))
    other_step = await segment.track(AMENDED, ctx=ctx("analytics.other"))

    assert first == repeat
    assert other_step.record_id != first.record_id
    assert [e["messageId"] for e in events(sandbox)] == [first.record_id, other_step.record_id]


@pytest.mark.parametrize(
    ("spec", "status", "classification", "retry_after_s"),
    [
        ("analytics:500=1", 500, "server", None),
        ("analytics:503=1", 503, "server", None),
        ("analytics.track:429=1,analytics.track:retry_after=4", 429, "rate_limit", 4.0),
    ],
)
async def test_server_errors_and_rate_limits_are_retryable_and_the_retry_counts_once(
    segment: SegmentAnalytics,
    sandbox: str,
    spec: str,
    status: int,
    classification: str,
    retry_after_s: float | None,
) -> None:
    set_faults(sandbox, spec)

    with pytest.raises(Retryable) as caught:
        await segment.track(AMENDED, ctx=ctx("analytics.track"))
    set_faults(sandbox, "")
    await segment.track(AMENDED, ctx=ctx("analytics.track"))

    error = caught.value
    assert (error.http_status, error.classification) == (status, classification)
    assert error.retry_after_s == retry_after_s
    assert len(events(sandbox)) == 1


async def test_commit_then_drop_is_retryable_and_the_retry_is_deduplicated(
    segment: SegmentAnalytics, sandbox: str
) -> None:
    set_faults(sandbox, "analytics:drop_after_commit=1")

    with pytest.raises(Retryable) as caught:
        await segment.track(AMENDED, ctx=ctx("analytics.track"))
    set_faults(sandbox, "")
    record = await segment.track(AMENDED, ctx=ctx("analytics.track"))

    assert caught.value.classification == "connection"
    [kept] = events(sandbox)
    assert kept["messageId"] == record.record_id
    ledger = httpx.get(f"{sandbox}/analytics/_admin/ledger").json()["records"]
    assert [r["create_calls"] for r in ledger] == [2]


async def test_a_wrong_write_key_is_terminal(sandbox: str) -> None:
    for key in ("wk_wrong", ""):
        connector = SegmentAnalytics(f"{sandbox}/analytics", write_key=key, allow=LOOPBACK)
        try:
            with pytest.raises(Terminal) as caught:
                await connector.track(AMENDED, ctx=ctx())
        finally:
            await connector.aclose()
        assert (caught.value.http_status, caught.value.classification) == (401, "auth")
    assert events(sandbox) == []


async def test_a_refused_event_is_terminal(segment: SegmentAnalytics, sandbox: str) -> None:
    nameless = TrackEvent(user_id="cus_1", event="", external_id="sub_1")

    with pytest.raises(Terminal) as caught:
        await segment.track(nameless, ctx=ctx())

    assert (caught.value.http_status, caught.value.classification) == (400, "validation")
    assert "event is required" in str(caught.value)
    assert events(sandbox) == []


async def test_a_key_too_long_for_segment_is_hashed_the_same_way_each_time(
    segment: SegmentAnalytics, sandbox: str
) -> None:
    long_key = CallContext(correlation_id=CORRELATION_ID, idempotency_key="k" * 150)

    first = await segment.track(AMENDED, ctx=long_key)
    again = await segment.track(AMENDED, ctx=long_key)

    assert first.record_id == again.record_id
    assert len(first.record_id) <= MAX_MESSAGE_ID
    assert len(events(sandbox)) == 1


async def test_the_analytics_port_tracks_through_segment(sandbox: str) -> None:
    port = SegmentEvents(
        SegmentAnalytics(f"{sandbox}/analytics", write_key=WRITE_KEY, allow=LOOPBACK)
    )
    try:
        record = await port.track(
            user_id="cus_9",
            event="Subscription Amended",
            properties={"quantity": 5},
            timestamp=None,
            external_id="sub_9",
            ctx=ctx("analytics.track"),
        )
    finally:
        await port.aclose()

    [sent] = events(sandbox)
    assert (record.system, record.external_id) == (System.ANALYTICS, "sub_9")
    assert (sent["userId"], sent["properties"], sent["messageId"]) == (
        "cus_9",
        {"quantity": 5},
        record.record_id,
    )
    # No timestamp sent: Segment's receipt time stands in, as it does for a real source.
    assert sent["timestamp"] == sent["receivedAt"]
    assert datetime.fromisoformat(sent["timestamp"]).tzinfo == UTC
