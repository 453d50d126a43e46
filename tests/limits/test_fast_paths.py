"""Fast paths next to general ones, held equal by property tests: what the hot path computes its own way must be
what the general code computes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from omnirelay.limits import LimitState, RateDecision, rate_limit_headers
from omnirelay.limits.headers import rate_limit_header_lines

seconds = st.one_of(
    st.sampled_from([0.0, 0.001, 0.02, 1.0, 59.999, 60.0, 90.5, 3723.5]),
    st.floats(min_value=0, max_value=10**6, allow_nan=False, allow_infinity=False),
)
states = st.builds(LimitState, st.integers(0, 10**12), st.integers(0, 10**12), seconds)
decisions = st.builds(
    RateDecision,
    st.booleans(),
    st.one_of(seconds, st.just(float("inf"))),
    st.none() | st.sampled_from(["key:1", "account:2"]),
    st.none() | st.sampled_from(["requests", "tokens"]),
    st.none() | states,
    st.none() | states,
    st.floats(0, 2e9),
)


@given(decisions)
def test_header_lines_are_the_headers_encoded(decision: RateDecision) -> None:
    expected = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in rate_limit_headers(decision).items()
    ]
    assert rate_limit_header_lines(decision) == expected
    assert rate_limit_header_lines(decision) == expected  # memoized durations too
