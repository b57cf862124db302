"""Worker metrics (Prometheus) and spans (OpenTelemetry API; exported only if an SDK is set up)."""

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

tracer = trace.get_tracer("concord.orchestrator")

# Labels stay bounded: workflows, step names, systems and outcomes are fixed sets.
TRANSACTIONS = Counter(
    "concord_worker_transactions_total",
    "Engine passes over a transaction, by outcome.",
    ["workflow", "outcome"],
)
STEP_SECONDS = Histogram(
    "concord_step_duration_seconds",
    "Duration of one step attempt, by target and outcome.",
    ["step", "target", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RETRIES = Counter(
    "concord_step_retries_total", "Step attempts scheduled to retry.", ["step", "target"]
)
EXCEPTIONS = Counter(
    "concord_exceptions_total",
    "Transactions sent to the exception queue.",
    ["workflow", "classification"],
)
QUEUE_DEPTH = Gauge("concord_queue_depth", "Jobs waiting in the arq queue, read by the sweeper.")
STALE_FOUND = Counter("concord_sweeper_stale_total", "Stale transactions the sweeper re-woke.")


@contextmanager
def span(name: str, correlation_id: str, **attributes: str) -> Iterator[trace.Span]:
    with tracer.start_as_current_span(name) as current:
        current.set_attribute("concord.correlation_id", correlation_id)
        for key, value in attributes.items():
            current.set_attribute(f"concord.{key}", value)
        yield current
