"""Structured JSON logs for the service (stdlib ``logging`` with a JSON formatter: one
object per line with time, level, logger, message, and the request id, user id, job id,
route and status when known). Every line is redacted once more on the way out, and the
request log names the route and status, never a query string (page links carry tokens)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from engine.redact import redact

__all__ = ["JsonFormatter", "configure_logging"]

_FIELDS = ("request_id", "user_id", "job_id", "method", "route", "status", "duration_ms",
           "principal")


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object (UTC ISO 8601 time)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            data["error"] = record.exc_info[0].__name__
        return redact(json.dumps(data, default=str))


def configure_logging(level: str = "info", stream: Any = None) -> None:
    """JSON lines on stderr for the engine's and uvicorn's loggers (idempotent)."""

    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("engine", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
