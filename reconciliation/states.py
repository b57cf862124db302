from enum import StrEnum


class RunState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class MismatchStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    AUTO_RESOLVED = "auto_resolved"
