"""Candidate order: priority tiers, weights, key rotation, failover by blame, held-back candidates."""

from __future__ import annotations

import random
from collections import Counter

from omnirelay.crypto import upstream_key_id
from omnirelay.errors import Blame, ErrorCode, GatewayError
from omnirelay.routing.breaker import BreakerBoard, BreakerPolicy
from omnirelay.routing.policy import RoutingPolicy
from omnirelay.routing.registry import ChannelRegistry, channel_target, key_target
from omnirelay.routing.router import Router
from omnirelay.store.snapshot import ChannelRecord


def channel(
    id: int,
    *,
    priority: int = 0,
    weight: int = 1,
    keys: tuple[str, ...] = ("k",),
    models: tuple[str, ...] = ("m",),
    model_map: dict[str, str] | None = None,
    type: str = "openai",
    enabled: bool = True,
    disabled_keys: int = 0,
) -> ChannelRecord:
    return ChannelRecord(
        id=id,
        name=f"c{id}",
        type=type,
        base_url="http://upstream",
        api_keys=keys,
        models=models,
        model_map=model_map or {},
        priority=priority,
        weight=weight,
        enabled=enabled,
        disabled_keys=disabled_keys,
    )


def order(registry: ChannelRegistry, board: BreakerBoard, model: str = "m") -> list[tuple[int, str]]:
    plan = registry.plan(model, board, 0.0)
    seen: list[tuple[int, str]] = []
    while (candidate := plan.next(Blame.channel if seen else None)) is not None:
        seen.append((candidate.channel.id, candidate.api_key))
    return seen


def test_lower_priority_tiers_come_first_and_weights_spread_the_load() -> None:
    registry = ChannelRegistry(
        (channel(1, priority=1), channel(2, weight=3), channel(3, weight=1), channel(4, weight=0)),
        rng=random.Random(7),
    )
    board = BreakerBoard()
    firsts: Counter[int] = Counter()
    for _ in range(4000):
        seen = order(registry, board)
        assert [c for c, _ in seen][-2:] == [4, 1]  # the weight-0 standby, then the next tier
        firsts[seen[0][0]] += 1
    assert 2800 < firsts[2] < 3200 and 800 < firsts[3] < 1200


def test_keys_take_turns_and_a_key_failure_tries_the_same_channels_next_key() -> None:
    registry = ChannelRegistry((channel(1, keys=("a", "b", "c")), channel(2, priority=1, keys=("z",))))
    board = BreakerBoard()
    starts = [registry.plan("m", board, 0.0).next() for _ in range(3)]
    assert [c.api_key for c in starts if c is not None] == ["a", "b", "c"]
    plan = registry.plan("m", board, 0.0)
    seen = [plan.next(), plan.next(Blame.key), plan.next(Blame.key), plan.next(Blame.key)]
    assert [(c.channel.id, c.api_key) for c in seen if c] == [(1, "a"), (1, "b"), (1, "c"), (2, "z")]
    assert plan.next(Blame.key) is None

    plan = registry.plan("m", board, 0.0)
    first = plan.next()
    after_channel = plan.next(Blame.channel)  # the channel's fault: its other keys are not tried
    assert first is not None and first.channel.id == 1
    assert after_channel is not None and after_channel.channel.id == 2


def test_aliases_and_model_maps_pick_the_upstream_name_per_channel() -> None:
    registry = ChannelRegistry(
        (
            channel(1, type="anthropic", models=("claude-x",)),
            channel(2, priority=1, models=(), model_map={"claude-x": "vendor/claude-x-2024"}),
        )
    )
    plan = registry.plan("claude-x", BreakerBoard(), 0.0)
    assert plan.primary_upstream_model == "claude-x"
    first, second = plan.next(), plan.next(Blame.channel)
    assert first is not None and second is not None
    assert (first.channel.type, first.upstream_model) == ("anthropic", "claude-x")
    assert (second.channel.type, second.upstream_model) == ("openai", "vendor/claude-x-2024")


def test_open_channels_and_cooling_keys_are_skipped_while_others_can_serve() -> None:
    registry = ChannelRegistry((channel(1, keys=("a", "b")), channel(2, priority=1)))
    board = BreakerBoard(BreakerPolicy(failure_threshold=1))
    board.cool(key_target(1, upstream_key_id("a")), 100.0)
    assert order(registry, board) == [(1, "b"), (2, "k")]
    board.failed(channel_target(1), 0.0)
    assert order(registry, board) == [(2, "k")]


def test_when_everything_is_held_back_the_soonest_to_recover_is_tried_as_a_probe() -> None:
    registry = ChannelRegistry((channel(1), channel(2)))
    board = BreakerBoard(BreakerPolicy(failure_threshold=1, open_s=30.0))
    board.failed(channel_target(1), 0.0)
    board.failed(channel_target(2), 10.0)
    plan = registry.plan("m", board, 12.0)
    candidate = plan.next()
    assert candidate is not None and candidate.channel.id == 1
    assert plan.next(Blame.channel) is None
    assert board.state_of(channel_target(1), 12.0).state == "half_open"


def test_fail_fast_refuses_with_retry_after_and_says_rate_limited_when_keys_are_cooling() -> None:
    registry = ChannelRegistry((channel(1),))
    board = BreakerBoard(BreakerPolicy(failure_threshold=1, open_s=30.0))
    board.cool(key_target(1, upstream_key_id("k")), 7.0)
    plan = registry.plan("m", board, 0.0, fail_fast=True)
    assert plan.next() is None
    refused = plan.unavailable()
    assert (refused.code, refused.retry_after) == (ErrorCode.rate_limited, 7.0)
    board.failed(channel_target(1), 0.0)
    plan = registry.plan("m", board, 1.0, fail_fast=True)
    assert plan.next() is None
    refused = plan.unavailable()
    assert (refused.code, refused.status, refused.retry_after) == (ErrorCode.no_channel, 503, 29.0)


def test_a_channel_whose_every_key_is_disabled_is_known_but_not_routable() -> None:
    registry = ChannelRegistry((channel(1, keys=(), disabled_keys=2), channel(2, enabled=False, models=("n",))))
    assert registry.serves("m") and not registry.serves("n")
    plan = registry.plan("m", BreakerBoard(), 0.0)
    assert plan.next() is None
    assert plan.unavailable().code is ErrorCode.no_channel


def test_router_blames_channels_cools_keys_and_disables_after_strikes() -> None:
    disabled: list[tuple[str, str]] = []
    now = [0.0]
    board = BreakerBoard(BreakerPolicy(failure_threshold=2))
    router = Router(
        RoutingPolicy(auto_disable_after=2, rate_limit_cooldown_s=3.0),
        board,
        on_permanent=lambda c, err, reason: disabled.append((c.key.id, reason)),
        clock=lambda: now[0],
    )
    router.registry = ChannelRegistry((channel(1, keys=("a", "b")),))
    candidate = router.plan("m").next()
    assert candidate is not None
    router.failed(candidate, GatewayError(ErrorCode.rate_limited, "slow down"))
    assert board.admit(candidate.key.target, 1.0) == 3.0
    router.failed(candidate, GatewayError(ErrorCode.rate_limited, "slow down", retry_after=20))
    assert board.admit(candidate.key.target, 1.0) == 20.0
    router.failed(candidate, GatewayError(ErrorCode.upstream_error, "boom"))
    router.failed(candidate, GatewayError(ErrorCode.overloaded, "busy", retry_after=9))
    assert board.state_of(candidate.target, 0.0).state == "open"
    auth = GatewayError(ErrorCode.upstream_auth, "rejected", upstream_status=401)
    router.failed(candidate, auth)
    router.succeeded(candidate)  # a success in between: the strikes start over
    router.failed(candidate, auth)
    assert disabled == []
    router.failed(candidate, auth)
    assert disabled == [(candidate.key.id, "the upstream rejected the key (upstream HTTP 401)")]
    router.failed(candidate, GatewayError(ErrorCode.invalid_request, "bad"))  # the request's fault: nothing


def test_upstream_answers_are_classified_from_status_and_body() -> None:
    assert ErrorCode.from_upstream(401, "authentication") is ErrorCode.upstream_auth
    assert ErrorCode.from_upstream(429, "insufficient_quota") is ErrorCode.upstream_quota
    assert ErrorCode.from_upstream(400, "authentication") is ErrorCode.upstream_auth  # Gemini's API_KEY_INVALID
    assert ErrorCode.from_upstream(429, "rate_limited") is ErrorCode.rate_limited
    assert ErrorCode.from_upstream(403, "permission") is ErrorCode.upstream_error
    assert ErrorCode.from_upstream(529, None) is ErrorCode.overloaded
    for code in (ErrorCode.upstream_auth, ErrorCode.upstream_quota):
        assert code.spec.blame is Blame.key and code.spec.permanent and code.spec.retryable
    assert ErrorCode.upstream_timeout.spec.blame is Blame.channel
    assert ErrorCode.invalid_request.spec.blame is Blame.request
