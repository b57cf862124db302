from datetime import UTC, datetime

import uuid_utils


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_correlation_id() -> str:
    """A UUIDv7: unique, and sortable by creation time."""
    return str(uuid_utils.uuid7())
