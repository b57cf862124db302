from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# For logs and telemetry only: persisted rows take the correlation ID as an explicit argument.
_correlation_id: ContextVar[str | None] = ContextVar("concord.correlation_id", default=None)


def current_correlation_id() -> str | None:
    return _correlation_id.get()


@contextmanager
def bind_correlation_id(value: str) -> Iterator[None]:
    token = _correlation_id.set(value)
    try:
        yield
    finally:
        _correlation_id.reset(token)
