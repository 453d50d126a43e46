"""Garbage-collector settings for a serving process.

CPython's cyclic collector runs a young collection every 700 net allocations of container objects, and a full one
when enough objects have survived into the old generation. A gateway under load trips both constantly: each call
allocates hundreds of containers, and the usage rows waiting for the batch writer survive long enough to be
promoted. Measured on the plain chat benchmark (one worker, ~900 calls/s): ~850 young and 6 full collections in
8 s, the full ones ~240 ms each over the ~150k objects loaded at start (price table, tokenizer, SQLAlchemy and
pydantic models): about 0.29 ms of CPU per call, a third of the whole relay.

So once the gateway is loaded, ``settle()`` collects what start-up left behind and moves every surviving object
into the permanent generation (``gc.freeze``: never scanned again), and raises the young threshold so a young
collection runs every few thousand allocations rather than every 700. ``release()`` undoes both when the last
gateway of the process stops, so frozen objects of stopped gateways (tests start many in one process) can be
collected again.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000
"""Net container allocations between young collections (CPython's default: 700)."""

_active = 0
_default_threshold = gc.get_threshold()


def settle() -> None:
    global _active, _default_threshold
    _active += 1
    if _active == 1:
        _default_threshold = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_THRESHOLD, *_default_threshold[1:])


def release() -> None:
    global _active
    _active = max(0, _active - 1)
    if _active == 0:
        gc.set_threshold(*_default_threshold)
        gc.unfreeze()
