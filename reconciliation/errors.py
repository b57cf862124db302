class ReconciliationError(Exception):
    """Base of reconciliation's domain errors."""


class InvalidPeriod(ReconciliationError, ValueError):
    def __init__(self, period: str) -> None:
        super().__init__(f"period {period!r} is not a YYYY-MM month")
        self.period = period


class RunNotFound(ReconciliationError):
    def __init__(self, run_id: int) -> None:
        super().__init__(f"reconciliation run {run_id} does not exist")


class RunInProgress(ReconciliationError):
    def __init__(self, period: str, run_id: int) -> None:
        super().__init__(f"reconciliation run {run_id} of {period} is still running")
        self.run_id = run_id


class RunFailed(ReconciliationError):
    def __init__(self, run_id: int, error: str) -> None:
        super().__init__(f"reconciliation run {run_id} failed: {error}")
        self.run_id = run_id
        self.error = error


class MismatchNotFound(ReconciliationError):
    def __init__(self, mismatch_id: int) -> None:
        super().__init__(f"mismatch {mismatch_id} does not exist")


class MismatchNotOpen(ReconciliationError):
    def __init__(self, mismatch_id: int, status: str) -> None:
        super().__init__(f"mismatch {mismatch_id} is {status}, not open")
        self.status = status


class MismatchNotLinked(ReconciliationError):
    """Nothing to replay: no Concord transaction is linked to the mismatch."""

    def __init__(self, mismatch_id: int) -> None:
        super().__init__(
            f"mismatch {mismatch_id} is linked to no Concord transaction, so there is nothing to "
            "replay; fix it in the system it is about, then resolve it"
        )


class SourceError(ReconciliationError):
    """A snapshot source could not read its system."""
