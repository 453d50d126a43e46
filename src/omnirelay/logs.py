"""Structured logs through the standard library, so operators route them as they like and tests can capture them.

Every event passes ``redact`` last: any value that looks like an API key is masked, as a net under the rule that
code never logs secrets in the first place.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any

import structlog

from omnirelay.api import request_id as request_ids

_SECRET = re.compile(r"\b(sk-[A-Za-z0-9_\-]{6})[A-Za-z0-9_\-]{8,}|\b(AIza[0-9A-Za-z_\-]{4})[0-9A-Za-z_\-]{20,}")


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name, value in event.items():
        if isinstance(value, str) and ("sk-" in value or "AIza" in value):
            event[name] = _SECRET.sub(lambda m: (m.group(1) or m.group(2)) + "***", value)
    return event


def add_request_id(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The relayed call's id (``api.request_id``) on every line its task writes."""
    request_id = request_ids.current.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


def configure_logging(level: str = "info") -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_request_id,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        cache_logger_on_first_use=True,
    )
    logging.getLogger("omnirelay").setLevel(level.upper())
