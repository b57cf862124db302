"""How long the API takes to answer, per route: the figure behind the intake acknowledgement
target (docs/performance.md), observable in production on GET /metrics.

The clock runs from the moment the server hands the request to the application until the last
byte of the response is handed back, so it is the server's share of what a caller waits; the
difference to the caller's own figure is the network and the caller's scheduling. Labels stay
bounded: the route is the path template FastAPI matched (`/v1/transactions/{correlation_id}`,
never the ID), "unmatched" when none did, and statuses are the few the routes answer.
"""

import time

from prometheus_client import CollectorRegistry, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"
# 0.02 is a bucket edge so that the share of acknowledgements within the 20 ms target is read
# straight off the histogram, not interpolated.
BUCKETS = (0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def request_histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "concord_api_request_duration_seconds",
        "Time from receiving a request to sending the last byte of its answer.",
        ["method", "route", "status"],
        buckets=BUCKETS,
        registry=registry,
    )


class RequestTiming:
    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception that escapes the app is answered 500 by Starlette
        answered = False

        async def timed_send(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
                self._observe(scope, status, start)

        try:
            await self.app(scope, receive, timed_send)
        except BaseException:
            # Background tasks run after the answer is sent: their failure is not the request's.
            if not answered:
                self._observe(scope, status, start)
            raise

    def _observe(self, scope: Scope, status: int, start: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or UNMATCHED
        self.histogram.labels(scope["method"], template, str(status)).observe(
            time.perf_counter() - start
        )
