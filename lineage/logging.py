"""JSON log lines for every Concord process, with the correlation ID of the transaction at hand.

`configure_json_logging` puts one handler on the root logger, so uvicorn (started with
`log_config=None`), arq and our own loggers all write one JSON object per line. A line logged
while a correlation ID is bound (`lineage.correlation.bind_correlation_id`) carries it as
`correlation_id`; an explicit `extra={"correlation_id": ...}` wins over the bound one.
"""

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from lineage.correlation import current_correlation_id

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}
# uvicorn's access log passes these as its format arguments.
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


def _without_query_values(path: object) -> object:
    """A request path with its query values blanked: they carry search terms, such as the
    e-mail address someone looked a customer up by, which logs must not keep."""
    if not isinstance(path, str) or "?" not in path:
        return path
    base, _, query = path.partition("?")
    names = (part.partition("=")[0] for part in query.split("&") if part)
    return base + "?" + "&".join(f"{name}=*" for name in names)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            record.args = tuple(
                _without_query_values(a) if i == 2 else a for i, a in enumerate(record.args)
            )
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        correlation_id = current_correlation_id()
        if correlation_id is not None:
            entry["correlation_id"] = correlation_id
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            entry.update(zip(_ACCESS_FIELDS, record.args, strict=False))
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def configure_json_logging(level: int | str = logging.INFO, stream: TextIO | None = None) -> None:
    """Send every logger's records, as JSON lines, to `stream` (default: stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # Libraries that set up their own handlers would print twice, and not as JSON.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq", "arq.worker"):
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
    logging.captureWarnings(True)
