"""A Jepsen-style history of a chaos run: every send and what it was told, every effect, checked.

Sends are what the client did: one signed invoice event each, and whether the intake
acknowledged it (2xx), refused it, or gave no answer at all (the API died or the connection
dropped: the outcome is unknown, so the event may or may not take effect). Effects are what the
world holds afterwards: the lineage (an inbox row and a transaction per event) and the sandbox
ERP's ledger (one record per external ID, the billing invoice ID).

The checker names four anomalies:

- lost: an acknowledged event with no transaction, a transaction not posted, or no ERP record;
- duplicated: one event that became more than one transaction (or several inbox rows);
- unexpected: a transaction or an ERP record that no send explains;
- duplicate ERP effects: more than one ERP record for one external ID.
"""

import asyncio
import json
import secrets
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.enums import TxState
from lineage.models import BusinessTransaction, InboxEvent
from tests.chaos.harness import EVENTS, System
from tests.factories import new_invoice, signed_headers, stripe_event

# How long a scenario lets the system settle before it judges the history: inside pytest's
# 120 s at the CI size, so a broken guarantee fails on the verdict rather than the timeout.
SETTLE_S = 30 + EVENTS / 10


@dataclass(frozen=True, slots=True)
class Send:
    event_id: str
    invoice_id: str
    # The HTTP status the intake answered; None when no answer came back.
    status: int | None

    @property
    def acked(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def unknown(self) -> bool:
        return self.status is None


@dataclass(frozen=True, slots=True)
class Effects:
    # source_event_id -> (correlation ID, state, invoice ID) of each transaction it started.
    transactions: dict[str, list[tuple[str, TxState, str | None]]]
    # Transactions whose inbox row no send explains (keyed by correlation ID).
    orphans: list[str]
    # ERP ledger records per external ID.
    erp: Counter[str]


@dataclass(frozen=True, slots=True)
class Verdict:
    lost: list[str]
    duplicated: list[str]
    unexpected: list[str]
    duplicate_erp: list[str]
    # Sends with an unknown outcome, and how many of them took effect anyway.
    unknown: int = 0
    unknown_effective: int = 0
    sends: int = 0
    acked: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected or self.duplicate_erp)

    def summary(self) -> str:
        return (
            f"{self.sends} sent, {self.acked} acked, {self.unknown} unknown "
            f"({self.unknown_effective} took effect): {len(self.lost)} lost, "
            f"{len(self.duplicated)} duplicated, {len(self.unexpected)} unexpected, "
            f"{len(self.duplicate_erp)} duplicate ERP effects"
            + ("" if self.ok else f"; e.g. {self._examples()}")
        )

    def _examples(self) -> str:
        parts = {
            "lost": self.lost,
            "duplicated": self.duplicated,
            "unexpected": self.unexpected,
            "duplicate_erp": self.duplicate_erp,
        }
        return ", ".join(f"{k}={v[:3]}" for k, v in parts.items() if v)

    def assert_ok(self) -> None:
        assert self.ok, self.summary()


@dataclass
class History:
    sends: list[Send] = field(default_factory=list)
    # The exact bytes of each event, so a redelivery is the same event, as Stripe resends it.
    bodies: dict[str, bytes] = field(default_factory=dict)

    @property
    def acked(self) -> list[Send]:
        return [s for s in self.sends if s.acked]

    async def send_invoices(
        self,
        system: System,
        count: int,
        *,
        invoice: dict[str, object] | None = None,
        event_prefix: str = "evt_",
        concurrency: int = 16,
    ) -> list[Send]:
        """Deliver `count` signed invoice.finalized events and record what each was told."""
        gate = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as client:

            async def send(fields: dict[str, object]) -> Send:
                event_id = f"{event_prefix}{secrets.token_hex(12)}"
                body = json.dumps(stripe_event(invoice=fields, event_id=event_id)).encode()
                self.bodies[event_id] = body
                async with gate:
                    status = await _post(client, body)
                return Send(event_id, str(fields["id"]), status)

            sent = await asyncio.gather(
                *(send(new_invoice(**(invoice or {}))) for _ in range(count))
            )
        self.sends.extend(sent)
        return list(sent)

    async def redeliver(self, system: System, sends: Iterable[Send]) -> list[Send]:
        """Send the same events again; each one's latest answer replaces what it was told."""
        wanted = {s.event_id for s in sends}
        async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as client:
            again = [
                Send(s.event_id, s.invoice_id, await _post(client, self.bodies[s.event_id]))
                for s in self.sends
                if s.event_id in wanted
            ]
        latest = {s.event_id: s for s in again}
        self.sends = [latest.get(s.event_id, s) for s in self.sends]
        return again

    async def effects(
        self, system: System, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> Effects:
        async with sessionmaker() as session:
            rows = (
                await session.execute(
                    select(
                        InboxEvent.source_event_id,
                        BusinessTransaction.correlation_id,
                        BusinessTransaction.state,
                        BusinessTransaction.invoice_id,
                    ).join(
                        BusinessTransaction,
                        BusinessTransaction.correlation_id == InboxEvent.correlation_id,
                        isouter=True,
                    )
                )
            ).all()
            all_tx = set(await session.scalars(select(BusinessTransaction.correlation_id)))
        transactions: dict[str, list[tuple[str, TxState, str | None]]] = {}
        with_inbox: set[str] = set()
        for event_id, correlation_id, state, invoice_id in rows:
            transactions.setdefault(event_id, []).append((correlation_id, state, invoice_id))
            with_inbox.add(correlation_id)
        erp = Counter(str(r["external_id"]) for r in system.ledger())
        return Effects(transactions, sorted(all_tx - with_inbox), erp)

    def check(self, effects: Effects, *, exempt: Iterable[str] = ()) -> Verdict:
        """Check the history; `exempt` invoice IDs may legitimately end unposted (poison)."""
        excused = set(exempt)
        # A refused send must leave nothing behind: its effects count as unexpected.
        sent_events = {s.event_id for s in self.sends if s.acked or s.unknown}
        sent_invoices = {s.invoice_id for s in self.sends if s.acked or s.unknown}
        lost: list[str] = []
        for send in self.acked:
            if send.invoice_id in excused:
                continue
            txs = effects.transactions.get(send.event_id, [])
            posted = any(state is TxState.POSTED for _c, state, _i in txs)
            if not posted or effects.erp[send.invoice_id] == 0:
                lost.append(send.event_id)
        duplicated = sorted(e for e, txs in effects.transactions.items() if len(txs) > 1)
        unexpected = sorted(
            [e for e in effects.transactions if e not in sent_events]
            + effects.orphans
            + [x for x in effects.erp if x not in sent_invoices]
        )
        unknown = [s for s in self.sends if s.unknown]
        return Verdict(
            lost=lost,
            duplicated=duplicated,
            unexpected=unexpected,
            duplicate_erp=sorted(x for x, n in effects.erp.items() if n > 1),
            unknown=len(unknown),
            unknown_effective=sum(1 for s in unknown if s.event_id in effects.transactions),
            sends=len(self.sends),
            acked=len(self.acked),
        )

    async def verdict(
        self,
        system: System,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        exempt: Iterable[str] = (),
    ) -> Verdict:
        return self.check(await self.effects(system, sessionmaker), exempt=exempt)


async def _post(client: httpx.AsyncClient, body: bytes) -> int | None:
    try:
        response = await client.post(
            "/v1/webhooks/stripe", content=body, headers=signed_headers(body)
        )
    except httpx.TransportError:
        # No answer: the event may or may not have been committed.
        return None
    return response.status_code


async def left_running(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Transactions still holding a lease or `running` once the run has settled."""
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(BusinessTransaction.correlation_id).where(
                BusinessTransaction.state == TxState.RUNNING
            )
        )
        return len(list(rows))


async def verdict_for_invoices(
    system: System, sessionmaker: async_sessionmaker[AsyncSession], invoice_ids: Iterable[str]
) -> Verdict:
    """The check for scenarios that kept only the invoice IDs of sends all acknowledged (the
    harness's send_invoices asserts each 202)."""
    effects = await History().effects(system, sessionmaker)
    event_of = {i: e for e, txs in effects.transactions.items() for _c, _s, i in txs if i}
    history = History([Send(event_of.get(i, f"no-event-for:{i}"), i, 202) for i in invoice_ids])
    return history.check(effects)
