"""Micro-USD conversions and the rounding rule: exact, never below the true cost, at most 1 micro above it."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnirelay.billing.cost import cost_of_tokens
from omnirelay.billing.money import (
    MICROS_PER_USD,
    as_ratio,
    ceil_div,
    micros_to_decimal,
    micros_to_usd_str,
    parse_multiplier,
    usd_to_micros,
)
from omnirelay.billing.prices import Price
from omnirelay.formats.usage import Usage


@pytest.mark.parametrize(
    ("value", "micros"),
    [
        ("2.50", 2_500_000),
        (" 0.075 ", 75_000),
        ("1e-6", 1),
        ("0", 0),
        (0.1, 100_000),
        (0.15, 150_000),
        (3, 3_000_000),
        (Decimal("0.000001"), 1),
        (Decimal("1234.567891"), 1_234_567_891),
    ],
)
def test_usd_to_micros_is_exact(value: str | int | float | Decimal, micros: int) -> None:
    assert usd_to_micros(value) == micros


@pytest.mark.parametrize(
    "value", ["nan", "NaN", "inf", "-inf", float("nan"), float("inf"), "", "  ", "abc", "1,5", "0.0000005", 1e-7]
)
def test_usd_to_micros_rejects_what_is_not_an_exact_amount(value: str | float) -> None:
    with pytest.raises(ValueError):
        usd_to_micros(value)


@pytest.mark.parametrize("value", ["-1", -1, -0.5, Decimal("-0.000001")])
def test_negative_amounts_only_when_allowed(value: str | int | float | Decimal) -> None:
    with pytest.raises(ValueError):
        usd_to_micros(value)
    assert usd_to_micros(value, allow_negative=True) < 0


@pytest.mark.parametrize("value", [True, None, [1], {"usd": 1}])
def test_usd_to_micros_rejects_non_numbers(value: object) -> None:
    with pytest.raises(TypeError):
        usd_to_micros(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("micros", "text", "trimmed"),
    [
        (1_234_567, "1.234567", "1.234567"),
        (0, "0.000000", "0.00"),
        (-1, "-0.000001", "-0.000001"),
        (2_500_000, "2.500000", "2.50"),
        (75_000, "0.075000", "0.075"),
        (120_000_000, "120.000000", "120.00"),
    ],
)
def test_micros_to_usd_str(micros: int, text: str, trimmed: str) -> None:
    assert micros_to_usd_str(micros) == text
    assert micros_to_usd_str(micros, trim=True) == trimmed


@given(st.integers(min_value=-(10**15), max_value=10**15), st.booleans())
def test_string_round_trip(micros: int, trim: bool) -> None:
    text = micros_to_usd_str(micros, trim=trim)
    assert usd_to_micros(text, allow_negative=True) == micros
    assert micros_to_decimal(micros) == Decimal(text)


@given(st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False, allow_infinity=False))
def test_any_six_place_decimal_converts_exactly(value: Decimal) -> None:
    assert Fraction(usd_to_micros(value)) == Fraction(value) * MICROS_PER_USD


@given(st.integers(min_value=-(10**30), max_value=10**30), st.integers(min_value=1, max_value=10**18))
def test_ceil_div_is_the_ceiling(numerator: int, denominator: int) -> None:
    result = ceil_div(numerator, denominator)
    assert result * denominator >= numerator
    assert (result - 1) * denominator < numerator


def test_ceil_div_rejects_non_positive_denominators() -> None:
    with pytest.raises(ValueError):
        ceil_div(1, 0)


@pytest.mark.parametrize(
    ("value", "ratio"),
    [("0.8", (4, 5)), (0.8, (4, 5)), (Decimal("1.25"), (5, 4)), (Fraction(2, 3), (2, 3)), (1, (1, 1)), (0, (0, 1))],
)
def test_as_ratio(value: str | float | Decimal | Fraction | int, ratio: tuple[int, int]) -> None:
    assert as_ratio(value) == ratio
    assert parse_multiplier(value) == Fraction(*ratio)


@pytest.mark.parametrize("value", ["-0.1", -1, Fraction(-1, 3), "nan", float("inf"), "x"])
def test_as_ratio_rejects_negative_and_non_finite(value: str | float | Fraction | int) -> None:
    with pytest.raises(ValueError):
        as_ratio(value)


# ---- the rounding rule, through the token cost -----------------------------------------------------------------

rates = st.integers(min_value=0, max_value=200_000_000)  # up to $200 per million tokens
counts = st.integers(min_value=0, max_value=2_000_000)
multipliers = st.fractions(min_value=0, max_value=10, max_denominator=1000)


@st.composite
def prices(draw: st.DrawFn) -> Price:
    return Price(
        input_per_mtok=draw(rates),
        output_per_mtok=draw(rates),
        cached_input_per_mtok=draw(rates),
        cache_write_per_mtok=draw(rates),
        per_request=draw(st.integers(min_value=0, max_value=100_000)),
    )


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    cached = draw(counts)
    write = draw(counts)
    plain = draw(counts)
    return Usage(
        input_tokens=plain + cached + write,
        output_tokens=draw(counts),
        cached_input_tokens=cached,
        cache_write_tokens=write,
    )


def exact_cost(price: Price, usage: Usage, multiplier: Fraction) -> Fraction:
    plain = usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens
    per_token = (
        plain * price.input_per_mtok
        + usage.cached_input_tokens * price.cached_input_per_mtok
        + usage.cache_write_tokens * price.cache_write_per_mtok
        + usage.output_tokens * price.output_per_mtok
    )
    if usage.input_tokens == usage.output_tokens == 0:
        return Fraction(0)
    return (Fraction(per_token, 1_000_000) + price.per_request) * multiplier


@settings(max_examples=50)
@given(prices(), usages(), multipliers)
def test_cost_is_never_below_the_exact_cost_and_less_than_one_micro_above(
    price: Price, usage: Usage, multiplier: Fraction
) -> None:
    charged = cost_of_tokens(price, usage, multiplier)
    exact = exact_cost(price, usage, multiplier)
    assert isinstance(charged, int)
    assert exact <= charged < exact + 1


@settings(max_examples=50)
@given(prices(), usages(), multipliers)
def test_an_exact_zero_is_charged_zero(price: Price, usage: Usage, multiplier: Fraction) -> None:
    assert cost_of_tokens(price, Usage(), multiplier) == 0
    assert cost_of_tokens(price, usage, 0) == 0


@settings(max_examples=50)
@given(prices(), usages(), usages(), multipliers)
def test_splitting_a_call_costs_at_most_one_micro_more_per_part(
    price: Price, first: Usage, second: Usage, multiplier: Fraction
) -> None:
    price = Price(
        input_per_mtok=price.input_per_mtok,
        output_per_mtok=price.output_per_mtok,
        cached_input_per_mtok=price.cached_input_per_mtok,
        cache_write_per_mtok=price.cache_write_per_mtok,
    )
    both = Usage(
        input_tokens=first.input_tokens + second.input_tokens,
        output_tokens=first.output_tokens + second.output_tokens,
        cached_input_tokens=first.cached_input_tokens + second.cached_input_tokens,
        cache_write_tokens=first.cache_write_tokens + second.cache_write_tokens,
    )
    apart = cost_of_tokens(price, first, multiplier) + cost_of_tokens(price, second, multiplier)
    together = cost_of_tokens(price, both, multiplier)
    assert together <= apart <= together + 1


@settings(max_examples=50)
@given(prices(), usages(), st.integers(min_value=1, max_value=50))
def test_cost_scales_with_whole_multipliers_exactly_when_exact(price: Price, usage: Usage, factor: int) -> None:
    exact = exact_cost(price, usage, Fraction(1))
    if exact.denominator == 1:
        assert cost_of_tokens(price, usage, factor) == factor * cost_of_tokens(price, usage)


def test_multiplier_forms_agree() -> None:
    price = Price(input_per_mtok=2_500_000, output_per_mtok=10_000_000)
    usage = Usage(input_tokens=1234, output_tokens=567)
    results = {
        cost_of_tokens(price, usage, m) for m in ("0.8", 0.8, Decimal("0.8"), Fraction(4, 5), parse_multiplier("0.8"))
    }
    assert len(results) == 1
