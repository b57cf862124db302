"""Bad input against the running system: refused with a 4xx and a reason, never a 5xx, and
nothing stored; a fuzzer on the intake operations finds no server error either; good traffic
sent afterwards flows as usual, and no refused event ever has an effect."""

import asyncio
import hashlib
import hmac
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import httpx
import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.enums import Role
from lineage.models import Base
from tests.api.test_webhooks_stripe import CASES, finalized_body
from tests.chaos.harness import running_system, wait_posted
from tests.chaos.history import History, Send
from tests.factories import WEBHOOK_SECRET, new_invoice, sign, signed_headers, stripe_event

STRIPE = "/v1/webhooks/stripe"
EVENTS = "/v1/events"
INTAKE = {f"POST {STRIPE}", "POST /v1/webhooks/hubspot", f"POST {EVENTS}"}
GOOD = 30
# The intake's body limit (ApiSettings.max_body_bytes).
LIMIT = 256 * 1024


def _cloudevent(**fields: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"ce-{new_invoice()['id']}",
        "source": "/billing/chaos",
        "type": "com.concord.invoice.generated",
        "datacontenttype": "application/json",
        "data": {"invoice_id": "in_x"},
        **fields,
    }


def _malformed() -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(case, path, body, headers): signed or keyed correctly, so the body itself is judged."""
    nested = b"[" * 100_000 + b"]" * 100_000
    huge_int = b'{"id": "evt_1", "type": "invoice.finalized", "n": ' + b"9" * 5000 + b"}"
    cases: list[tuple[str, bytes]] = [
        ("deeply nested", nested),
        ("a 5000-digit number", huge_int),
        ("infinity", b'{"id": "evt_1", "type": "invoice.finalized", "data": {"object": 1e999}}'),
        ("NaN literal", b'{"id": "evt_1", "type": "invoice.finalized", "x": NaN}'),
        ("invalid UTF-8", b'{"id": "evt_\xff\xfe", "type": "invoice.finalized"}'),
        ("NUL in a string", b'{"id": "evt_\\u0000", "type": "invoice.finalized", "data": {}}'),
        ("lone surrogate", b'{"id": "evt_\\ud800", "type": "invoice.finalized", "data": {}}'),
        ("empty body", b""),
        ("just null", b"null"),
        ("a string", b'"invoice.finalized"'),
        ("truncated", json.dumps(stripe_event(invoice=new_invoice())).encode()[:-7]),
    ]
    # Valid invoice events but for one value that a database cannot store.
    for name, value in (
        ("NaN", "NaN"),
        ("1e999", "1e999"),
        ("a NUL", '"a\\u0000b"'),
        ("a lone surrogate", '"\\ud800"'),
    ):
        event = json.dumps(stripe_event(invoice=new_invoice(metadata={"x": "PLACEHOLDER"})))
        cases.append((f"valid event with {name}", event.replace('"PLACEHOLDER"', value).encode()))
    return [(f"stripe: {n}", STRIPE, b, _signed(b)) for n, b in cases]


def _signed(body: bytes) -> dict[str, str]:
    """Stripe's v1 scheme over raw bytes, which need not be UTF-8 (the factory's must be)."""
    stamp = int(time.time())
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    return {
        "Stripe-Signature": f"t={stamp},v1={mac.hexdigest()}",
        "Content-Type": "application/json",
    }


def _refusals(ingest_key: str) -> list[tuple[str, str, bytes, dict[str, str]]]:
    keyed = {"Authorization": f"Bearer {ingest_key}", "Content-Type": "application/json"}
    oversize_event = json.dumps(_cloudevent(data={"pad": "x" * (LIMIT + 1)})).encode()
    oversize_stripe = json.dumps(
        stripe_event(invoice=new_invoice(description="x" * (LIMIT + 1)))
    ).encode()
    no_source = _cloudevent()
    del no_source["source"]
    cases = [
        ("events: no key", EVENTS, json.dumps(_cloudevent()).encode(), {}),
        ("events: bad JSON", EVENTS, b"{nope", keyed),
        ("events: no source", EVENTS, json.dumps(no_source).encode(), keyed),
        ("events: spec 0.3", EVENTS, json.dumps(_cloudevent(specversion="0.3")).encode(), keyed),
        ("events: oversize", EVENTS, oversize_event, keyed),
        ("stripe: oversize", STRIPE, oversize_stripe, signed_headers(oversize_stripe)),
        *_malformed(),
    ]
    for case, body, headers, _status, _code in CASES:
        content = body if body is not None else finalized_body()
        cases.append((f"stripe matrix: {case}", STRIPE, content, headers(content)))
    return cases


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 16 * 1024):
        yield body[start : start + 16 * 1024]


async def _stored(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Rows in every table but the API keys the test made."""
    counts: dict[str, int] = {}
    async with sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            if table.name in {"api_key", "alembic_version"}:
                continue
            n = int(await session.scalar(select(func.count()).select_from(table)) or 0)
            if n:
                counts[table.name] = n
    return counts


def _fuzz_intake(base_url: str, key: str) -> tuple[list[str], Counter[int]]:
    """schemathesis on the intake operations only: no 5xx; returns failures and statuses."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"unreadable operation: {result.err()}")
            continue
        operation = result.ok()
        if operation.label not in INTAKE:
            continue

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=60,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case[Any]) -> None:
            response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {key}"})
            statuses[response.status_code] += 1
            case.validate_response(response, checks=[not_a_server_error])

        try:
            cast(Callable[[], None], run)()
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label}: {exc}"[:3000])
    return failures, statuses


async def test_bad_input_is_refused_with_reasons_and_stores_nothing(
    database_url: str,
    redis_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    api_keys: dict[Role, str],
) -> None:
    history = History()
    with running_system(database_url, redis_url) as system:
        system.start_worker()
        answers: dict[str, tuple[int, str]] = {}
        async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as client:
            for case, path, body, headers in _refusals(api_keys[Role.INGEST]):
                response = await client.post(path, content=body, headers=headers)
                error = response.json().get("error", {}) if response.content else {}
                answers[case] = (response.status_code, str(error.get("message", "")))
                if path == STRIPE:
                    # Recorded as sends, so any effect of a refused event shows as unexpected.
                    history.sends.append(Send(f"refused:{case}", case, response.status_code))
            # An oversize body with no Content-Length (chunked) is cut off while it streams.
            streamed = json.dumps(stripe_event(invoice=new_invoice(description="y" * LIMIT)))
            chunked = await client.post(
                STRIPE,
                content=_chunks(streamed.encode()),
                headers={
                    "Stripe-Signature": sign(streamed.encode()),
                    "Content-Type": "application/json",
                },
            )
        server_errors = {c: a for c, a in answers.items() if a[0] >= 500}
        unexplained = {c: a for c, a in answers.items() if a[0] < 500 and not a[1]}
        accepted = {c: a for c, a in answers.items() if a[0] < 400}
        stored_after_refusals = await _stored(sessionmaker)

        await history.send_invoices(system, GOOD)
        posted = await wait_posted(sessionmaker, GOOD, timeout_s=120)
        verdict = await history.verdict(system, sessionmaker)

        # Last, as its accepted events are outside the history: the fuzzer may build valid ones.
        before = (await _stored(sessionmaker)).get("inbox_event", 0)
        failures, statuses = await asyncio.to_thread(
            _fuzz_intake, system.api_url, api_keys[Role.INGEST]
        )
        fuzz_stored = (await _stored(sessionmaker)).get("inbox_event", 0) - before

    assert server_errors == {}
    assert accepted == {}
    assert unexplained == {}
    assert chunked.status_code == 413, chunked.text
    # Refusals store nothing but the audit rows of keyed calls: each refused /v1/events call
    # (a denied or failed mutation); webhooks carry no principal to audit.
    keyed = sum(1 for _case, path, _b, _h in _refusals(api_keys[Role.INGEST]) if path == EVENTS)
    assert stored_after_refusals == {"audit_log": keyed}
    assert posted == GOOD, verdict.summary()
    verdict.assert_ok()
    assert failures == []
    assert sum(statuses.values()) > 0
    # Only what the fuzzer was told was accepted may be stored.
    assert fuzz_stored <= sum(n for status, n in statuses.items() if 200 <= status < 300)
