"""Durations as clients write them: 30s, 5m, 24h, 7d."""

import re
from datetime import timedelta

from api.errors import ApiError

DURATION_PATTERN = r"^[1-9][0-9]{0,5}[smhd]$"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str, *, name: str, maximum: timedelta) -> timedelta:
    match = re.fullmatch(DURATION_PATTERN[1:-1], value)
    if match is None:
        raise ApiError(422, "invalid_duration", f"{name} must look like 30s, 5m, 24h or 7d")
    seconds = int(value[:-1]) * _UNITS[value[-1]]
    if seconds > maximum.total_seconds():
        raise ApiError(422, "invalid_duration", f"{name} may be at most {maximum}")
    return timedelta(seconds=seconds)
