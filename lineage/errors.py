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
