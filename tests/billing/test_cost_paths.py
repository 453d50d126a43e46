"""The token cost's fast path and precomputed rates against the formulas they replaced, over random prices (audio
and image rates, long-context rates, flat fees, free), usages (negative counts, more cached than input, audio
and image parts) and multipliers in every accepted form: equal to the micro, or the same error."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from omnirelay.billing.cost import (
    _cost_of_any_tokens,
    cost_of_tokens,
    describe_token_cost,
    worst_case_cost,
    worst_case_output_tokens,
)
from omnirelay.billing.money import RatioLike, as_ratio, ceil_div, micros_to_usd_str
from omnirelay.billing.prices import LongContext, Price
from omnirelay.formats.usage import Usage

# ---- the formulas as they were before the rates were precomputed (verbatim but for names) ----------------------

MODAL_PARTS = (
    ("audio_input_tokens", "audio_input_per_mtok", "input"),
    ("image_input_tokens", "image_input_per_mtok", "input"),
    ("audio_output_tokens", "audio_output_per_mtok", "output"),
)


def reference_rates(price: Price, prompt_tokens: int) -> Price | LongContext:
    long = price.long_context
    if long is not None and prompt_tokens > long.threshold:
        return long
    return price


def reference_modal_rate(price: Price, rates: Price | LongContext, field: str, side: str) -> int:
    rate: int | None = getattr(price, field)
    if rate is not None:
        return rate
    return rates.input_per_mtok if side == "input" else rates.output_per_mtok


def reference_modal_parts(usage: Usage, uncached_input: int, output: int) -> list[tuple[int, str, str]]:
    room = {"input": max(uncached_input, 0), "output": max(output, 0)}
    parts = []
    for usage_field, price_field, side in MODAL_PARTS:
        count = min(max(getattr(usage, usage_field), 0), room[side])
        if count:
            room[side] -= count
            parts.append((count, price_field, side))
    return parts


def reference_cost(price: Price, usage: Usage, multiplier: RatioLike) -> int:
    if price.free:
        return 0
    inp = usage.input_tokens if usage.input_tokens > 0 else 0
    out = usage.output_tokens if usage.output_tokens > 0 else 0
    cached = usage.cached_input_tokens if usage.cached_input_tokens > 0 else 0
    write = usage.cache_write_tokens if usage.cache_write_tokens > 0 else 0
    if not (inp or out or cached or write):
        return 0
    rates = reference_rates(price, max(inp, cached + write))
    parts = reference_modal_parts(usage, inp - cached - write, out)
    plain = inp - cached - write - sum(count for count, _, side in parts if side == "input")
    if plain < 0:
        plain = 0
    scaled = (
        plain * rates.input_per_mtok
        + cached * rates.cached_input_per_mtok
        + write * rates.cache_write_per_mtok
        + (out - sum(count for count, _, side in parts if side == "output")) * rates.output_per_mtok
        + sum(count * reference_modal_rate(price, rates, field, side) for count, field, side in parts)
        + price.per_request * 1_000_000
    )
    num, den = as_ratio(multiplier)
    return ceil_div(scaled * num, 1_000_000 * den)


def reference_worst_case(price: Price, prompt_tokens: int, max_output: int | None, multiplier: RatioLike) -> int:
    if price.free:
        return 0
    prompt = prompt_tokens if prompt_tokens > 0 else 0
    out = worst_case_output_tokens(price, prompt, max_output)
    rates = reference_rates(price, prompt)
    input_rate = max(
        rates.input_per_mtok,
        rates.cached_input_per_mtok,
        rates.cache_write_per_mtok,
        *(reference_modal_rate(price, rates, field, side) for _, field, side in MODAL_PARTS if side == "input"),
    )
    output_rate = max(
        rates.output_per_mtok,
        *(reference_modal_rate(price, rates, field, side) for _, field, side in MODAL_PARTS if side == "output"),
    )
    scaled = prompt * input_rate + out * output_rate + price.per_request * 1_000_000
    num, den = as_ratio(multiplier)
    return ceil_div(scaled * num, 1_000_000 * den)


# ---- random prices, usages, multipliers --------------------------------------------------------------------------

rates = st.integers(min_value=0, max_value=200_000_000)
optional_rates = st.none() | rates
counts = st.integers(min_value=0, max_value=3_000_000) | st.integers(min_value=-5, max_value=300)


@st.composite
def prices(draw: st.DrawFn) -> Price:
    base = {
        "input_per_mtok": draw(rates),
        "output_per_mtok": draw(rates),
        "cached_input_per_mtok": draw(rates),
        "cache_write_per_mtok": draw(rates),
    }
    long = None
    if draw(st.booleans()):
        rises = st.integers(min_value=0, max_value=50_000_000)
        long = LongContext(
            threshold=draw(st.integers(min_value=0, max_value=2_000_000)),
            **{name: rate + draw(rises) for name, rate in base.items()},
        )
    return Price(
        **base,
        audio_input_per_mtok=draw(optional_rates),
        audio_output_per_mtok=draw(optional_rates),
        image_input_per_mtok=draw(optional_rates),
        per_request=draw(st.sampled_from([0, 0, 1, 35_000]) | st.integers(min_value=0, max_value=100_000)),
        max_output_tokens=draw(st.none() | st.integers(min_value=0, max_value=200_000)),
        context_window=draw(st.none() | st.integers(min_value=0, max_value=2_000_000)),
        free=draw(st.sampled_from([False, False, False, True])),
        long_context=long,
    )


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    modal = draw(st.booleans())
    return Usage(
        input_tokens=draw(counts),
        output_tokens=draw(counts),
        cached_input_tokens=draw(st.sampled_from([0]) | counts),
        cache_write_tokens=draw(st.sampled_from([0]) | counts),
        reasoning_tokens=draw(counts),
        audio_input_tokens=draw(counts) if modal else 0,
        image_input_tokens=draw(counts) if modal else 0,
        audio_output_tokens=draw(counts) if modal else 0,
    )


valid_multipliers = (
    st.fractions(min_value=0, max_value=10, max_denominator=1000)
    | st.integers(min_value=0, max_value=20)
    | st.decimals(min_value=0, max_value=10, places=3).map(str)
    | st.decimals(min_value=0, max_value=10, places=6)
    | st.sampled_from([0.8, 1.25, 0.1, 1.0])
)
multipliers = valid_multipliers | st.sampled_from([Fraction(-1, 2), -1, "-0.5", True])


def outcome(function: object, *args: object) -> int | tuple[type[BaseException], str]:
    try:
        return function(*args)  # type: ignore[operator,no-any-return]
    except (ValueError, TypeError) as exc:
        return type(exc), str(exc)


@settings(max_examples=3000)
@given(prices(), usages(), multipliers)
def test_the_token_cost_is_the_formula_it_replaced(price: Price, usage: Usage, multiplier: RatioLike) -> None:
    expected = outcome(reference_cost, price, usage, multiplier)
    assert outcome(cost_of_tokens, price, usage, multiplier) == expected
    if not price.free:  # the general path alone (cost_of_tokens answers a free price before it)
        assert outcome(_cost_of_any_tokens, price, usage, multiplier) == expected


@settings(max_examples=1000)
@given(prices(), usages(), valid_multipliers)
def test_the_formula_shown_is_the_one_charged(price: Price, usage: Usage, multiplier: RatioLike) -> None:
    charged = reference_cost(price, usage, multiplier)
    assert describe_token_cost(price, usage, multiplier).endswith(f" = ${micros_to_usd_str(charged)}")


@settings(max_examples=3000)
@given(
    prices(),
    st.integers(min_value=-5, max_value=3_000_000),
    st.none() | st.integers(min_value=-5, max_value=300_000),
    multipliers,
)
def test_the_worst_case_is_the_formula_it_replaced(
    price: Price, prompt: int, max_output: int | None, multiplier: RatioLike
) -> None:
    expected = outcome(reference_worst_case, price, prompt, max_output, multiplier)
    assert outcome(worst_case_cost, price, prompt, max_output, multiplier) == expected


def test_the_common_shapes_take_the_fast_path_with_their_known_costs() -> None:
    mini = Price(input_per_mtok=150_000, cached_input_per_mtok=75_000, output_per_mtok=600_000)
    usage = Usage(input_tokens=12, output_tokens=16, cached_input_tokens=4)
    assert cost_of_tokens(mini, usage, Fraction(1)) == 12  # (8 x 0.15 + 4 x 0.075 + 16 x 0.60) / 1e6 $ = 11.1 µ$
    assert cost_of_tokens(mini, usage, Fraction(4, 5)) == 9
    assert cost_of_tokens(mini, usage, Decimal("0.8")) == 9
    sonnet = Price(
        input_per_mtok=3_000_000,
        output_per_mtok=15_000_000,
        long_context=LongContext(threshold=200_000, input_per_mtok=6_000_000, output_per_mtok=22_500_000),
    )
    assert cost_of_tokens(sonnet, Usage(input_tokens=200_000, output_tokens=1000)) == 615_000
    assert cost_of_tokens(sonnet, Usage(input_tokens=200_001, output_tokens=1000)) == 1_222_506
    assert worst_case_cost(sonnet, 200_001, 1000) == 1_222_506
