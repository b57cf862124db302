"""Seeded fault injection: parse a SPEC and decide, call by call, what goes wrong.

SPEC is comma-separated `SYSTEM[.OPERATION]:KIND=VALUE` items plus an optional `seed=N`, e.g.
`erp:500=0.1,erp:429=0.2,erp.invoice:drop_after_commit=0.02,crm:latency_ms=200,seed=7`.
docs/sandbox.md describes every KIND. Each (system, operation) pair draws from its own
random.Random seeded with `seed:system:operation`, and every call draws the same number of
values whatever the outcome, so the N-th call to an operation meets the same fate on every run.
"""

import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SYSTEMS = frozenset({"analytics", "billing", "crm", "erp", "provisioning", "support"})
# Order matters: one uniform draw is cut into these bands, so their rates must sum to <= 1.
STATUS_KINDS = ("500", "502", "503", "422", "429")
DRIFT_KINDS = ("drift_drop", "drift_amount", "drift_currency", "drift_status")
RATE_KINDS = frozenset({*STATUS_KINDS, "hang", "drop_after_commit", *DRIFT_KINDS})
VALUE_KINDS = frozenset({"latency_ms", "retry_after", "hang_s", "outage", "rate_limit"})
KINDS = RATE_KINDS | VALUE_KINDS

DEFAULT_RETRY_AFTER_S = 1
DEFAULT_HANG_S = 60.0

_TARGET = re.compile(r"^([a-z]+)(?:\.([a-z0-9_]+))?$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class FaultSpecError(ValueError):
    """The SPEC does not parse; the message names the offending item."""


@dataclass(frozen=True, slots=True)
class Rule:
    system: str
    operation: str | None
    kind: str
    raw: str
    # The parsed value: a rate, milliseconds, seconds or requests per second; for outage,
    # `value` is the down time and `period_s` the cycle (inf for a single window).
    value: float
    period_s: float = math.inf

    def as_json(self) -> dict[str, str | None]:
        return {
            "system": self.system,
            "operation": self.operation,
            "kind": self.kind,
            "value": self.raw,
        }


@dataclass(frozen=True, slots=True)
class FaultPlan:
    spec: str = ""
    seed: int = 0
    rules: tuple[Rule, ...] = ()


def _duration_s(text: str, item: str) -> float:
    match = _DURATION.match(text.strip())
    if match is None:
        raise FaultSpecError(f"{item!r}: {text!r} is not a duration like 10s, 500ms, 2m or 1h")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _number(text: str, item: str, *, low: float, high: float = math.inf) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FaultSpecError(f"{item!r}: {text!r} is not a number") from None
    if not (low <= value <= high) or math.isnan(value):
        raise FaultSpecError(f"{item!r}: {text!r} must be between {low} and {high}")
    return value


def _parse_rule(item: str) -> Rule:
    target, sep, assignment = item.partition(":")
    kind, eq, raw = assignment.partition("=")
    match = _TARGET.match(target.strip())
    if not sep or not eq or match is None:
        raise FaultSpecError(f"{item!r} is not SYSTEM[.OPERATION]:KIND=VALUE")
    system, operation = match.group(1), match.group(2)
    kind, raw = kind.strip(), raw.strip()
    if system not in SYSTEMS:
        raise FaultSpecError(f"{item!r}: unknown system {system!r} (one of {sorted(SYSTEMS)})")
    if kind not in KINDS:
        raise FaultSpecError(f"{item!r}: unknown kind {kind!r} (one of {sorted(KINDS)})")
    if kind in RATE_KINDS:
        return Rule(system, operation, kind, raw, _number(raw, item, low=0.0, high=1.0))
    if kind == "outage":
        down, slash, period = raw.partition("/")
        down_s = _duration_s(down, item)
        period_s = _duration_s(period, item) if slash else math.inf
        if period_s <= 0 or down_s > period_s:
            raise FaultSpecError(f"{item!r}: the outage must fit in its period")
        return Rule(system, operation, kind, raw, down_s, period_s)
    if kind == "rate_limit":
        return Rule(system, operation, kind, raw, _number(raw, item, low=1e-6))
    return Rule(system, operation, kind, raw, _number(raw, item, low=0.0))


def parse_spec(spec: str) -> FaultPlan:
    """Parse a SPEC; the empty SPEC is the plan with no faults."""
    seed = 0
    rules: dict[tuple[str, str | None, str], Rule] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        if item.startswith("seed="):
            try:
                seed = int(item.removeprefix("seed="))
            except ValueError:
                raise FaultSpecError(f"{item!r}: the seed must be an integer") from None
            continue
        rule = _parse_rule(item)
        key = (rule.system, rule.operation, rule.kind)
        if key in rules:
            raise FaultSpecError(f"{item!r}: {rule.kind} is set twice for this target")
        rules[key] = rule
    plan = FaultPlan(spec=spec.strip(), seed=seed, rules=tuple(rules.values()))
    for rule in plan.rules:
        # Check every target's status bands together, including system-wide ones it inherits.
        total = sum(
            r.value for k in STATUS_KINDS if (r := _lookup(plan, rule.system, rule.operation, k))
        )
        if total > 1.0:
            raise FaultSpecError(f"the status-error rates for {rule.system} add up to {total} > 1")
    return plan


def _lookup(plan: FaultPlan, system: str, operation: str | None, kind: str) -> Rule | None:
    """The rule for this kind: an operation's own rule beats the system-wide one."""
    found = None
    for rule in plan.rules:
        if rule.system != system or rule.kind != kind:
            continue
        if rule.operation is not None and rule.operation == operation:
            return rule
        if rule.operation is None:
            found = rule
    return found


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to one call, decided before the system sees it."""

    latency_s: float = 0.0
    status: int | None = None
    retry_after_s: int | None = None
    reason: str = ""
    hang_s: float | None = None
    drop_after_commit: bool = False


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass
class FaultController:
    """The live plan, shared by every system of one sandbox; replace() swaps it atomically."""

    clock: Callable[[], float] = time.monotonic
    plan: FaultPlan = field(default_factory=FaultPlan)
    _epoch: float = 0.0
    _rngs: dict[str, random.Random] = field(default_factory=dict)
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)

    @classmethod
    def from_spec(
        cls, spec: str, *, clock: Callable[[], float] = time.monotonic
    ) -> "FaultController":
        controller = cls(clock=clock)
        controller.replace(spec)
        return controller

    def replace(self, spec: str) -> None:
        """Apply a new SPEC (raising FaultSpecError, and keeping the old one, if it is invalid)."""
        plan = parse_spec(spec)
        self.plan = plan
        self._epoch = self.clock()
        self._rngs = {}
        self._buckets = {}

    def _rng(self, stream: str) -> random.Random:
        rng = self._rngs.get(stream)
        if rng is None:
            # A str seed is hashed with SHA-512, so streams are stable across processes and runs.
            rng = self._rngs[stream] = random.Random(f"{self.plan.seed}:{stream}")
        return rng

    def _rate(self, system: str, operation: str, kind: str) -> float:
        rule = _lookup(self.plan, system, operation, kind)
        return rule.value if rule else 0.0

    def decide(self, system: str, operation: str) -> Decision:
        rng = self._rng(f"{system}:{operation}")
        u_status, u_hang, u_drop = rng.random(), rng.random(), rng.random()
        latency = self._rate(system, operation, "latency_ms") / 1000
        retry_rule = _lookup(self.plan, system, operation, "retry_after")
        retry_after = int(retry_rule.value) if retry_rule else DEFAULT_RETRY_AFTER_S
        if (down := self._outage_left_s(system, operation)) is not None:
            return Decision(latency, 503, math.ceil(down), "outage")
        if (wait := self._rate_limited_s(system, operation)) is not None:
            return Decision(latency, 429, max(1, math.ceil(wait)), "rate_limit")
        band = 0.0
        for kind in STATUS_KINDS:
            band += self._rate(system, operation, kind)
            if u_status < band:
                return Decision(latency, int(kind), retry_after if kind == "429" else None, kind)
        if u_hang < self._rate(system, operation, "hang"):
            hang_rule = _lookup(self.plan, system, operation, "hang_s")
            return Decision(latency, hang_s=hang_rule.value if hang_rule else DEFAULT_HANG_S)
        drop = u_drop < self._rate(system, operation, "drop_after_commit")
        return Decision(latency, drop_after_commit=drop)

    def drift(self, system: str, operation: str) -> frozenset[str]:
        """Which drift kinds hit this write (drift_drop wins over the others)."""
        rng = self._rng(f"{system}:{operation}:drift")
        draws = {kind: rng.random() for kind in DRIFT_KINDS}
        hit = frozenset(k for k, u in draws.items() if u < self._rate(system, operation, k))
        return frozenset({"drift_drop"}) if "drift_drop" in hit else hit

    def _outage_left_s(self, system: str, operation: str) -> float | None:
        rule = _lookup(self.plan, system, operation, "outage")
        if rule is None:
            return None
        elapsed = self.clock() - self._epoch
        into = elapsed % rule.period_s if math.isfinite(rule.period_s) else elapsed
        return rule.value - into if into < rule.value else None

    def _rate_limited_s(self, system: str, operation: str) -> float | None:
        rule = _lookup(self.plan, system, operation, "rate_limit")
        if rule is None:
            return None
        # One token bucket per rule target: a system-wide limit is shared by its operations.
        key = (system, rule.operation or "*")
        now = self.clock()
        burst = max(1.0, rule.value)
        bucket = self._buckets.setdefault(key, _Bucket(tokens=burst, at=now))
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rule.value)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / rule.value
