"""Which channels can serve a model, in which order.

Built from a ``Snapshot`` once per change, so selection on the hot path is a dict lookup plus a weighted shuffle of a
few entries. Lower ``priority`` tiers are tried first; inside a tier the order is a weighted random permutation, so
load spreads by weight and every channel of the tier is still a failover candidate.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from dataclasses import dataclass

from omnirelay.store.snapshot import ChannelRecord


@dataclass(frozen=True, slots=True)
class Candidate:
    channel: ChannelRecord
    upstream_model: str
    api_key: str


class ChannelRegistry:
    def __init__(self, channels: tuple[ChannelRecord, ...], rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        tiers: dict[str, dict[int, list[ChannelRecord]]] = defaultdict(lambda: defaultdict(list))
        for channel in channels:
            if not channel.enabled:
                continue
            for model in channel.serves():
                tiers[model][channel.priority].append(channel)
        self._tiers = {model: [by_priority[p] for p in sorted(by_priority)] for model, by_priority in tiers.items()}
        self._key_cursor = {channel.id: itertools.cycle(channel.api_keys or ("",)) for channel in channels}

    def models(self) -> list[str]:
        return sorted(self._tiers)

    def serves(self, model: str) -> bool:
        return model in self._tiers

    def candidates(self, model: str) -> list[Candidate]:
        ordered: list[Candidate] = []
        for tier in self._tiers.get(model, ()):
            for channel in self._weighted_order(tier):
                ordered.append(Candidate(channel, channel.upstream_model(model), next(self._key_cursor[channel.id])))
        return ordered

    def _weighted_order(self, tier: list[ChannelRecord]) -> list[ChannelRecord]:
        if len(tier) == 1:
            return tier

        # Efraimidis-Spirakis: sort by u^(1/w); a weight-0 channel goes last (a standby).
        def sort_key(channel: ChannelRecord) -> float:
            return self._rng.random() ** (1.0 / channel.weight) if channel.weight > 0 else -1.0

        return sorted(tier, key=sort_key, reverse=True)
