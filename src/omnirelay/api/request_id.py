"""The id of one relayed call: the client's ``x-request-id`` when it is a sane token, else a new one.

``RelayFront`` picks it before the handler runs and puts it in a context variable, which ``Call`` takes as its
``request_id`` and ``logs.add_request_id`` adds to every log line the call's task writes (read when a line is
written, not bound per request: structlog's ``bind_contextvars`` costs more than the rest of this together).
Upstreams' own ids never replace it: the relay builds its response headers itself.
"""

from __future__ import annotations

import itertools
import os
import re
from contextvars import ContextVar

HEADER = b"x-request-id"
_SANE = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")

current: ContextVar[str | None] = ContextVar("omnirelay_request_id", default=None)
supplied: ContextVar[bool] = ContextVar("omnirelay_request_id_supplied", default=False)
"""The id came from the client: good for correlation, but not unique, so never a key of our own state (budget
holds take a fresh id then)."""


def client_request_id(value: bytes | None) -> str | None:
    """The client's id (its ``x-request-id`` header), if it is at most 128 characters of ``[A-Za-z0-9._:-]``."""
    if value is None or _SANE.fullmatch(value) is None:
        return None
    return value.decode("ascii")


def bind(request_id: str, *, from_client: bool) -> None:
    """For the rest of the current task: the call's id, and on every log line."""
    current.set(request_id)
    if from_client:
        supplied.set(True)


class _RequestIds:
    """``req_`` + a random per-process prefix + a counter: unique across instances and workers (the prefix is
    drawn again in a forked child) without a ``getrandom`` system call per request."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = "req_" + os.urandom(6).hex()
        self.counter = itertools.count(int.from_bytes(os.urandom(3)))

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter):012x}"


new_request_id = _RequestIds()
