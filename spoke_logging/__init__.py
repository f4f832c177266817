"""Log lines as JSON objects, one a line, for log collectors (``SPOKE_LOG_FORMAT=json``).

Each line holds ``ts`` (UTC, ISO 8601), ``level``, ``logger`` and ``msg``, then the fields a call
passed with ``extra=`` (``cmd`` for a command's id, ``req`` for a hub request's, ``hub`` for a hub's
id), and ``exc`` with the traceback when there is one. A field whose name speaks of a secret is
written as ``"[redacted]"``, whatever a caller passed. Hub and cloud both use this package, which
knows nothing of either."""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]
LOG_FORMAT_ENV = "SPOKE_LOG_FORMAT"
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
REDACTED = "[redacted]"
_SECRET_NAME = re.compile(r"pass(word)?|secret|token|authorization|credential|api_?key", re.I)
# What every LogRecord carries; anything else on a record came from ``extra=`` (but uvicorn's
# ``color_message``, the message again with terminal colour codes).
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message"}


def log_format_from_env(default: LogFormat = "text") -> LogFormat:
    """The format SPOKE_LOG_FORMAT asks for; ValueError names the allowed ones."""
    value = os.environ.get(LOG_FORMAT_ENV, "").strip().lower() or default
    return check_log_format(value)


def check_log_format(value: str) -> LogFormat:
    for known in LOG_FORMATS:
        if value == known:
            return known
    raise ValueError(f"unknown log format {value!r} (use {' or '.join(LOG_FORMATS)})")


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a log call passed with ``extra=``, secrets redacted."""
    return {k: REDACTED if _SECRET_NAME.search(k) else v
            for k, v in vars(record).items() if k not in _RECORD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per record; values JSON cannot hold are written as their ``str()``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in fields(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def json_handler(stream: TextIO) -> logging.Handler:
    """A handler writing JSON lines to ``stream`` (stderr for services)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    return handler
