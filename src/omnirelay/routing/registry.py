"""Which channels and upstream keys can serve a model, in which order.

Built from a ``Snapshot`` once per change, so selection on the hot path is a dict lookup, a weighted shuffle of a
few entries and one breaker lookup per candidate. Lower ``priority`` tiers are tried first; inside a tier the order
is a weighted random permutation, so load spreads by weight and every channel of the tier is still a failover
candidate. A channel's keys take turns (round robin); the ones a breaker, a cool-down or a disable holds back are
skipped.

``RoutePlan`` hands one call its candidates one at a time, as its attempts need them: after a failure blamed on the
key (a 429, a rejected key) the same channel's next key comes; after one blamed on the channel, the next channel.
Candidates held back are remembered; if nothing else was left to try, the one that recovers soonest is tried anyway
(as its breaker's probe) unless the policy says to fail fast.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass

from omnirelay.crypto import upstream_key_id
from omnirelay.errors import Blame, ErrorCode, GatewayError
from omnirelay.routing.breaker import BreakerBoard
from omnirelay.store.snapshot import ChannelRecord


def channel_target(channel_id: int) -> str:
    return f"channel:{channel_id}"


def key_target(channel_id: int, key_id: str) -> str:
    return f"key:{channel_id}:{key_id}"


@dataclass(frozen=True, slots=True)
class UpstreamKey:
    secret: str
    id: str
    """``crypto.upstream_key_id``: the name the admin API and the database use."""
    target: str
    """Its breaker's name."""


@dataclass(frozen=True, slots=True)
class Candidate:
    channel: ChannelRecord
    upstream_model: str
    key: UpstreamKey
    target: str
    """The channel's breaker name."""

    @property
    def api_key(self) -> str:
        return self.key.secret


class Route:
    """A routable channel: its keys, its breaker name, and one ``Candidate`` per (model, key), made once per
    reload so that routing a call allocates none."""

    __slots__ = ("_by_model", "_turn", "channel", "keys", "target")

    def __init__(self, channel: ChannelRecord) -> None:
        self.channel = channel
        self.target = channel_target(channel.id)
        self.keys = tuple(
            UpstreamKey(secret, key_id, key_target(channel.id, key_id))
            for secret in (channel.api_keys or ("",))
            for key_id in (upstream_key_id(secret),)
        )
        self._turn = 0
        self._by_model = {model: tuple(self.candidate(model, key) for key in self.keys) for model in channel.serves()}

    def rotation(self, model: str) -> tuple[Candidate, ...]:
        """The model's candidates, one per key, starting with the key whose turn it is."""
        candidates = self._by_model[model]
        count = len(candidates)
        if count == 1:
            return candidates
        start = self._turn % count
        self._turn += 1
        return candidates[start:] + candidates[:start]

    def candidate(self, model: str, key: UpstreamKey) -> Candidate:
        return Candidate(self.channel, self.channel.upstream_model(model), key, self.target)


class ChannelRegistry:
    def __init__(self, channels: tuple[ChannelRecord, ...], rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self.routes = {channel.id: Route(channel) for channel in channels if channel.routable}
        tiers: dict[str, dict[int, list[Route]]] = defaultdict(lambda: defaultdict(list))
        known: set[str] = set()
        for channel in channels:
            if not channel.enabled:
                continue
            known |= channel.serves()
            route = self.routes.get(channel.id)
            if route is not None:
                for model in channel.serves():
                    tiers[model][channel.priority].append(route)
        self._tiers = {model: [by_priority[p] for p in sorted(by_priority)] for model, by_priority in tiers.items()}
        self._known = known
        """Models of enabled channels, routable or not: one whose every key is disabled answers 503, not 404."""

    def models(self) -> list[str]:
        return sorted(self._known)

    def serves(self, model: str) -> bool:
        return model in self._known

    def targets(self) -> list[str]:
        """Every breaker name: channels and their keys."""
        return [t for route in self.routes.values() for t in (route.target, *(k.target for k in route.keys))]

    def candidates(self, model: str) -> list[Candidate]:
        """One candidate per routable channel in routing order, breakers not consulted (which format the first
        channel speaks, say)."""
        return [
            route.candidate(model, route.keys[0])
            for tier in self._tiers.get(model, ())
            for route in self.weighted_order(tier)
        ]

    def plan(self, model: str, board: BreakerBoard, now: float, *, fail_fast: bool = False) -> RoutePlan:
        return RoutePlan(self, model, self._tiers.get(model, ()), board, now, fail_fast)

    def weighted_order(self, tier: list[Route]) -> list[Route]:
        if len(tier) == 1:
            return tier

        # Efraimidis-Spirakis: sort by u^(1/w); a weight-0 channel goes last (a standby).
        def sort_key(route: Route) -> float:
            weight = route.channel.weight
            return self._rng.random() ** (1.0 / weight) if weight > 0 else -1.0

        return sorted(tier, key=sort_key, reverse=True)


class RoutePlan:
    """The candidates of one call, produced as its attempts ask for them (see the module docstring)."""

    __slots__ = (
        "_board",
        "_deferred",
        "_fail_fast",
        "_key_pos",
        "_keys",
        "_now",
        "_order",
        "_pos",
        "_registry",
        "_route",
        "_tier",
        "_tiers",
        "model",
        "tried",
    )

    def __init__(
        self,
        registry: ChannelRegistry,
        model: str,
        tiers: list[list[Route]] | tuple[()],
        board: BreakerBoard,
        now: float,
        fail_fast: bool,
    ) -> None:
        self.model = model
        self.tried = 0
        self._registry = registry
        self._tiers = tiers
        self._board = board
        self._now = now
        self._fail_fast = fail_fast
        self._tier = 0
        self._order: list[Route] = registry.weighted_order(tiers[0]) if tiers else []
        self._pos = 0
        self._route: Route | None = None
        self._keys: tuple[Candidate, ...] = ()
        self._key_pos = 0
        self._deferred: list[tuple[float, Route, Candidate | None]] = []

    @property
    def primary_upstream_model(self) -> str | None:
        """The upstream model of the first channel in line (what admission prices by)."""
        return self._order[0].channel.upstream_model(self.model) if self._order else None

    def next(self, blame: Blame | None = None) -> Candidate | None:
        """The next candidate after a failure blamed on ``blame`` (None for the first); None when none is left."""
        if blame is Blame.key and self._route is not None:
            candidate = self._next_key()
            if candidate is not None:
                return candidate
        board, now = self._board, self._now
        while True:
            route = self._next_route()
            if route is None:
                return self._last_resort()
            until = board.admit(route.target, now)
            if until:
                self._deferred.append((until, route, None))
                continue
            self._route = route
            self._keys = route.rotation(self.model)
            self._key_pos = 0
            candidate = self._next_key()
            if candidate is not None:
                return candidate

    def _next_route(self) -> Route | None:
        while self._pos >= len(self._order):
            self._tier += 1
            if self._tier >= len(self._tiers):
                return None
            self._order = self._registry.weighted_order(self._tiers[self._tier])
            self._pos = 0
        route = self._order[self._pos]
        self._pos += 1
        return route

    def _next_key(self) -> Candidate | None:
        keys = self._keys
        while self._key_pos < len(keys):
            candidate = keys[self._key_pos]
            self._key_pos += 1
            until = self._board.admit(candidate.key.target, self._now)
            if until:
                assert self._route is not None
                self._deferred.append((until, self._route, candidate))
                continue
            self.tried += 1
            return candidate
        return None

    def _last_resort(self) -> Candidate | None:
        """Everything was held back and nothing tried: the soonest to recover goes anyway, as a probe."""
        if self.tried or self._fail_fast:
            return None
        waiting = [d for d in self._deferred if d[0] != math.inf]
        if not waiting:
            return None
        _, route, candidate = min(waiting, key=lambda d: d[0])
        if candidate is None:
            board, now = self._board, self._now
            usable = (c for c in route.rotation(self.model) if board.admit(c.key.target, now) != math.inf)
            candidate = next(usable, None)
            if candidate is None:
                return None
        self._board.force_probe(route.target, self._now)
        self._board.force_probe(candidate.key.target, self._now)
        self.tried += 1
        self._route = None
        return candidate

    def unavailable(self) -> GatewayError:
        """The error for a call that got no candidate at all."""
        waiting = [d for d in self._deferred if d[0] != math.inf]
        if not waiting:
            return GatewayError(ErrorCode.no_channel, f"No channel is available for '{self.model}'.")
        soonest = min(d[0] for d in waiting)
        retry_after = max(1.0, math.ceil(soonest - self._now))
        targets = [candidate.key.target if candidate else route.target for _, route, candidate in waiting]
        if all(self._board.cooling(target, self._now) for target in targets):
            return GatewayError(
                ErrorCode.rate_limited,
                f"Every channel for '{self.model}' is rate limited upstream; retry after {retry_after:.0f}s.",
                retry_after=retry_after,
            )
        return GatewayError(
            ErrorCode.no_channel,
            f"Every channel for '{self.model}' is failing; retry after {retry_after:.0f}s.",
            retry_after=retry_after,
        )
