"""States of a bulk replay job and of each transaction in it."""

from enum import StrEnum


class BulkState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


# A job in one of these still owes work; an API process resumes it after a restart.
UNFINISHED_BULK_STATES = frozenset({BulkState.PENDING, BulkState.RUNNING})


class BulkItemOutcome(StrEnum):
    PENDING = "pending"
    REPLAYED = "replayed"
    SKIPPED_BUSY = "skipped_busy"
    SKIPPED_NOT_REPLAYABLE = "skipped_not_replayable"
    SKIPPED_MISSING = "skipped_missing"
    CANCELLED = "cancelled"
