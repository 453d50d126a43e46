"""The breaker state machine and the board, in process, with an explicit clock."""

from __future__ import annotations

import math

from omnirelay.routing.breaker import Breaker, BreakerBoard, BreakerPolicy, Change, State

POLICY = BreakerPolicy(failure_threshold=3, error_rate=0.5, min_calls=10, window_s=10.0, open_s=5.0, max_open_s=12.0)


def test_consecutive_failures_open_and_a_success_resets_the_count() -> None:
    breaker = Breaker(POLICY)
    assert breaker.record(False, 0.0) is None
    assert breaker.record(False, 0.1) is None
    assert breaker.record(True, 0.2) is None
    assert breaker.record(False, 0.3) is None
    assert breaker.record(False, 0.4) is None
    assert breaker.record(False, 0.5) is State.open
    assert breaker.until == 5.5


def test_error_rate_over_the_window_opens_once_enough_calls_were_seen() -> None:
    breaker = Breaker(POLICY)
    outcomes = [True, False] * 4  # 50 % failures, never two in a row, but only 8 calls
    for i, ok in enumerate(outcomes):
        assert breaker.record(ok, i * 0.1) is None
    assert breaker.record(True, 0.9) is None  # 9 calls
    assert breaker.record(False, 1.0) is State.open  # 10 calls, 5 failures


def test_the_window_forgets_old_calls() -> None:
    breaker = Breaker(POLICY)
    for i in range(8):
        breaker.record(i % 2 == 0, i * 0.1)
    assert breaker.window(1.0) == (8, 4)
    assert breaker.window(30.0) == (0, 0)
    for i in range(9):  # fresh window: 9 calls, 4 failures: below min_calls, then below the rate
        assert breaker.record(i % 2 == 1, 30.0 + i * 0.1) is None
    assert breaker.record(True, 31.0) is None


def test_half_open_probe_closes_on_success_and_reopens_longer_on_failure() -> None:
    breaker = Breaker(POLICY)
    for i in range(3):
        breaker.record(False, i * 0.1)
    assert breaker.state is State.open
    assert not breaker.probe(1.0)
    assert breaker.probe(5.3)
    assert breaker.state is State.half_open
    assert breaker.record(False, 5.4) is State.open
    assert breaker.until == 5.4 + 10.0  # doubled
    assert breaker.probe(15.5)
    assert breaker.record(False, 15.6) is State.open
    assert breaker.until == 15.6 + 12.0  # capped at max_open_s
    assert breaker.probe(28.0)
    assert breaker.record(True, 28.1) is State.closed
    assert (breaker.state, breaker.consecutive, breaker.reopened) == (State.closed, 0, 0)


def test_an_open_breaker_ignores_successes_of_calls_sent_before_it_opened() -> None:
    breaker = Breaker(POLICY)
    for i in range(3):
        breaker.record(False, i * 0.1)
    assert breaker.record(True, 0.5) is None
    assert breaker.state is State.open


def test_board_admits_blocks_probes_and_tells_its_listener() -> None:
    changes: list[Change] = []
    board = BreakerBoard(POLICY, listener=changes.append)
    assert board.admit("channel:1", 0.0) == 0.0
    for i in range(3):
        board.failed("channel:1", i * 0.1)
    assert changes == [Change("channel:1", "open", 5.2)]
    assert board.admit("channel:1", 1.0) == 5.2
    assert board.admit("channel:1", 5.3) == 0.0  # the probe
    assert board.admit("channel:1", 5.4) == 5.3 + POLICY.probe_timeout_s  # the others wait for it
    board.succeeded("channel:1", 5.5)
    assert changes[-1] == Change("channel:1", "closed")
    assert board.admit("channel:1", 5.6) == 0.0
    assert board.blocked == {}


def test_board_cooldown_and_disable() -> None:
    board = BreakerBoard(POLICY)
    board.cool("key:1:a", 10.0)
    assert board.cooling("key:1:a", 5.0)
    assert board.admit("key:1:a", 5.0) == 10.0
    assert board.state_of("key:1:a", 5.0).state == "cooling"
    assert board.admit("key:1:a", 10.0) == 0.0
    assert not board.cooling("key:1:a", 10.0)
    board.disable("key:1:b")
    assert board.admit("key:1:b", 1e12) == math.inf
    board.keep_disabled({"key:1:b"})
    assert board.admit("key:1:b", 0.0) == math.inf
    board.keep_disabled(set())
    assert board.admit("key:1:b", 0.0) == 0.0


def test_board_applies_other_instances_transitions_without_echoing_them() -> None:
    changes: list[Change] = []
    board = BreakerBoard(POLICY, listener=changes.append)
    board.apply(Change("channel:9", "open", 50.0))
    assert board.admit("channel:9", 10.0) == 50.0
    assert board.state_of("channel:9", 10.0).state == "open"
    board.apply(Change("channel:9", "closed"))
    assert board.admit("channel:9", 10.0) == 0.0
    board.apply(Change("key:9:x", "cool", 20.0))
    assert board.admit("key:9:x", 10.0) == 20.0
    assert changes == []


def test_disabled_policy_records_nothing() -> None:
    board = BreakerBoard(BreakerPolicy(enabled=False, failure_threshold=1))
    board.failed("channel:1", 0.0)
    assert board.admit("channel:1", 0.0) == 0.0
