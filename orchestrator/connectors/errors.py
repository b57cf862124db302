"""Connector failures, classified the way the engine acts on them (DESIGN.md error classes)."""

from lineage.enums import ErrorClass


class ConnectorError(Exception):
    error_class: ErrorClass = ErrorClass.TERMINAL
    # Connection, timeout, rate limit, validation, ...: what an operator reads in the queue.
    classification: str = "validation"

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class Retryable(ConnectorError):
    """The outcome is unknown or transient: look the record up, then try again later."""

    error_class = ErrorClass.RETRYABLE
    classification = "connection"

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        classification: str = "connection",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status)
        self.classification = classification
        self.retry_after_s = retry_after_s


class Terminal(ConnectorError):
    """The target refused the request as it stands; retrying the same call cannot help."""

    def __init__(
        self, message: str, *, http_status: int | None = None, classification: str = "validation"
    ) -> None:
        super().__init__(message, http_status=http_status)
        self.classification = classification


class Conflict(ConnectorError):
    """The record already exists: resolved by looking it up, never by posting again."""

    error_class = ErrorClass.CONFLICT
    classification = "conflict"
