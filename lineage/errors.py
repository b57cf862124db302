class LineageError(Exception):
    """Base of the lineage store's domain errors."""


class TransactionNotFound(LineageError):
    def __init__(self, correlation_id: str) -> None:
        super().__init__(f"transaction {correlation_id} does not exist")
        self.correlation_id = correlation_id


class InvalidDatabaseUrl(LineageError):
    def __init__(self, url: str) -> None:
        super().__init__(
            f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
        )
        self.url = url


class InvalidCursor(LineageError):
    def __init__(self) -> None:
        super().__init__("the cursor is not one this API issued")


class TransactionBusy(LineageError):
    """The transaction is still being worked on; act on it once it has settled."""

    def __init__(self, correlation_id: str, state: str) -> None:
        super().__init__(f"transaction {correlation_id} is {state}; wait until it settles")
        self.correlation_id = correlation_id
        self.state = state


class NotReplayable(LineageError):
    def __init__(self, correlation_id: str, why: str) -> None:
        super().__init__(f"transaction {correlation_id} cannot be replayed: {why}")
        self.correlation_id = correlation_id


class ExceptionNotFound(LineageError):
    def __init__(self, exception_id: int) -> None:
        super().__init__(f"exception {exception_id} does not exist")
        self.exception_id = exception_id


class BulkReplayNotFound(LineageError):
    def __init__(self, bulk_id: int) -> None:
        super().__init__(f"bulk replay {bulk_id} does not exist")
        self.bulk_id = bulk_id


class BulkReplayFinished(LineageError):
    """A finished job cannot be cancelled: every transaction in it already has its outcome."""

    def __init__(self, bulk_id: int, state: str) -> None:
        super().__init__(f"bulk replay {bulk_id} is already {state}")
        self.bulk_id = bulk_id
        self.state = state


class ApiKeyNotFound(LineageError):
    def __init__(self, key_id: int) -> None:
        super().__init__(f"API key {key_id} does not exist or is already revoked")
        self.key_id = key_id
