"""A usage row as it travels from the relay to the batch writer: a plain tuple in :data:`USAGE_COLUMNS` order.

Every relayed call queues one, so it is built as cheaply as Python allows: no dict, no object, the time as
integer microseconds since the epoch (``time.time_ns() // 1000``, the same clock and the same flooring as
``datetime.now(UTC)``) rather than a datetime. The writer turns it into the driver's form once per batch
(``store/writer.py``) and sums the rollups straight from it (``store/rollup.py``).

The columns whose driver form differs between SQLite and PostgreSQL (the time, the two booleans) come first, so
a dialect's conversion rebuilds a row as ``(converted..., *row[3:])``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from omnirelay.store.models import UsageLog

USAGE_COLUMNS = (
    "created_at",
    "stream",
    "usage_estimated",
    "request_id",
    "key_id",
    "account_id",
    "endpoint",
    "model",
    "upstream_model",
    "channel_id",
    "status_code",
    "error_code",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_micros",
    "latency_ms",
    "ttft_ms",
    "overhead_ms",
    "client_ip",
)
if set(USAGE_COLUMNS) != {c.name for c in UsageLog.__table__.columns if c.name != "id"}:  # a column added later
    raise RuntimeError("USAGE_COLUMNS no longer names every usage_logs column")

UsageRow = tuple[
    int,  # created_at: microseconds since 1970-01-01T00:00Z
    bool,  # stream
    bool,  # usage_estimated
    str,  # request_id
    int | None,  # key_id
    int | None,  # account_id
    str,  # endpoint
    str,  # model
    str | None,  # upstream_model
    int | None,  # channel_id
    int,  # status_code
    str | None,  # error_code
    int,  # prompt_tokens
    int,  # completion_tokens
    int,  # cached_tokens
    int,  # reasoning_tokens
    int,  # cost_micros
    int,  # latency_ms
    int | None,  # ttft_ms
    int,  # overhead_ms
    str | None,  # client_ip
]

_INDEX = {name: i for i, name in enumerate(USAGE_COLUMNS)}
CREATED_AT = _INDEX["created_at"]
REQUEST_ID = _INDEX["request_id"]
KEY_ID = _INDEX["key_id"]
ACCOUNT_ID = _INDEX["account_id"]
ENDPOINT = _INDEX["endpoint"]
MODEL = _INDEX["model"]
CHANNEL_ID = _INDEX["channel_id"]
STATUS_CODE = _INDEX["status_code"]
PROMPT_TOKENS = _INDEX["prompt_tokens"]
COMPLETION_TOKENS = _INDEX["completion_tokens"]
COST_MICROS = _INDEX["cost_micros"]
LATENCY_MS = _INDEX["latency_ms"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def epoch_us(when: datetime) -> int:
    """An aware datetime as a row's ``created_at``."""
    return (when - EPOCH) // MICROSECOND


# What a column a producer leaves out gets: the table's Python-side default (all scalars), or NULL.
_DEFAULTS: dict[str, Any] = {
    c.name: None if c.default is None else c.default.arg  # type: ignore[attr-defined]
    for c in UsageLog.__table__.columns
    if c.name != "id" and (c.default is not None or c.nullable)
}


def usage_row(*, created_at: datetime, **values: Any) -> UsageRow:
    """A row from named values, the column defaults for the rest: for producers off the relay's path (a task's
    submit) and tests. Leaving out a column that has no default and is not nullable raises ``KeyError``."""
    unknown = values.keys() - _INDEX.keys()
    if unknown:
        raise TypeError(f"not usage_logs columns: {sorted(unknown)}")
    merged = {**_DEFAULTS, **values, "created_at": epoch_us(created_at)}
    return tuple(merged[name] for name in USAGE_COLUMNS)  # type: ignore[return-value]
