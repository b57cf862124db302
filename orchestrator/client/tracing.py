"""W3C trace context carried from intake into jobs, so a caller's trace spans the whole run.

The OpenTelemetry API propagates context even without an SDK: a worker that extracts the
traceparent handed over at intake carries the same trace ID into every outbound call.
"""

from opentelemetry import propagate, trace
from opentelemetry.context import Context


def current_traceparent() -> str | None:
    """The current trace context as a traceparent header value, if there is a valid one."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def context_from(traceparent: str | None) -> Context | None:
    """The context a traceparent names; None when it is missing or malformed (W3C: ignore it)."""
    if not traceparent:
        return None
    context = propagate.extract({"traceparent": traceparent})
    return context if trace.get_current_span(context).get_span_context().is_valid else None
