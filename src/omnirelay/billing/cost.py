"""What one call costs, in micro-USD, from its :class:`Price`, what it used and the group multiplier.

Every function follows the rounding rule of :mod:`omnirelay.billing.money`: the exact cost of all parts, times the
multiplier, is one fraction over integers, rounded up once. Multipliers (``vip`` = ``"0.8"``) may be given as
``int``, ``Fraction``, ``Decimal``, decimal string or float; parse a group's once with
:func:`~omnirelay.billing.money.parse_multiplier` and pass the ``Fraction`` on the hot path.

A ``free`` price costs zero by every unit. A unit the price does not sell by (``per_image`` is ``None``) raises
:class:`PriceUnavailable` rather than charging zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Final

from omnirelay.billing.money import Micros, RatioLike, as_ratio, micros_to_usd_str
from omnirelay.billing.prices import TOKENS_PER_MTOK, Price, TokenRates
from omnirelay.formats.usage import Usage

DEFAULT_MAX_OUTPUT_TOKENS: Final = 8192
"""Output reserved when neither the client nor the price table knows a limit (and no context window is known)."""


class PriceUnavailable(LookupError):
    """The model has a price, but not by the unit asked for (images of a chat model, seconds of a text model)."""


def _token_rates(price: Price, prompt_tokens: int) -> TokenRates:
    long = price.long_context
    if long is not None and prompt_tokens > long.threshold:
        return price.long_rates  # type: ignore[return-value]  # set whenever long_context is
    return price.token_rates


def cost_of_tokens(price: Price, usage: Usage, multiplier: RatioLike = 1) -> Micros:
    """The cost of a call's tokens: uncached input, cache reads, cache writes and output at their rates, plus
    ``per_request``, times ``multiplier``, rounded up once.

    ``usage.input_tokens`` includes cached and cache-write tokens (the canonical :class:`Usage`); only the rest is
    billed at the input rate. Reasoning tokens are part of ``output_tokens``. Audio and image tokens (parts of the
    input and output, see :data:`MODAL_PARTS`) cost the price's own rates for them when it has them. A usage
    without a single token costs zero, flat fee included: no tokens means the upstream produced nothing (an error
    or an abort before work), and that is never billed. Negative counts from a confused adapter count as zero.

    The common call (no negative count, no audio or image part at a rate of its own) is one expression over the
    price's precomputed :class:`~omnirelay.billing.prices.TokenRates`; the rest takes :func:`_cost_of_any_tokens`,
    which gives the same result for the common call too (a property test holds them equal).
    """
    if price.free:
        return 0
    inp = usage.input_tokens
    out = usage.output_tokens
    cached = usage.cached_input_tokens
    write = usage.cache_write_tokens
    if not (inp or out or cached or write):
        return 0
    rates = price.token_rates if price.long_rates is None else _token_rates(price, max(inp, cached + write))
    uncached = inp - cached - write
    # A negative count, more cached than input, or an audio or image part at a rate of its own: the general path.
    # (Of ints, a | b is negative exactly when one of them is: one test for four, cheaper than min().)
    if (uncached | out | cached | write) < 0 or (
        rates.modal_apart
        and (usage.audio_input_tokens > 0 or usage.image_input_tokens > 0 or usage.audio_output_tokens > 0)
    ):
        return _cost_of_any_tokens(price, usage, multiplier)
    scaled = (
        uncached * rates.input_per_mtok
        + cached * rates.cached_input_per_mtok
        + write * rates.cache_write_per_mtok
        + out * rates.output_per_mtok
        + rates.flat
    )
    return _scaled(scaled, 1, TOKENS_PER_MTOK, multiplier)


def _cost_of_any_tokens(price: Price, usage: Usage, multiplier: RatioLike) -> Micros:
    """:func:`cost_of_tokens` of any usage of a price that is not free: counts clamped, audio and image parts."""
    inp = usage.input_tokens if usage.input_tokens > 0 else 0
    out = usage.output_tokens if usage.output_tokens > 0 else 0
    cached = usage.cached_input_tokens if usage.cached_input_tokens > 0 else 0
    write = usage.cache_write_tokens if usage.cache_write_tokens > 0 else 0
    if not (inp or out or cached or write):
        return 0
    rates = _token_rates(price, max(inp, cached + write))
    parts = _modal_parts(usage, inp - cached - write, out)
    plain = inp - cached - write - sum(count for count, _, side in parts if side == "input")
    if plain < 0:
        plain = 0
    scaled = (
        plain * rates.input_per_mtok
        + cached * rates.cached_input_per_mtok
        + write * rates.cache_write_per_mtok
        + (out - sum(count for count, _, side in parts if side == "output")) * rates.output_per_mtok
        + sum(count * getattr(rates, field) for count, field, _ in parts)
        + rates.flat
    )
    return _scaled(scaled, 1, TOKENS_PER_MTOK, multiplier)


MODAL_PARTS: tuple[tuple[str, str, str, str], ...] = (
    ("audio_input_tokens", "audio_input_per_mtok", "input", "audio in"),
    ("image_input_tokens", "image_input_per_mtok", "input", "image in"),
    ("audio_output_tokens", "audio_output_per_mtok", "output", "audio out"),
)
"""Parts of the input or output a model may price apart: (``Usage`` field, ``Price`` field, side, label). A price
without that rate bills the part at its side's rate (resolved in :class:`~omnirelay.billing.prices.TokenRates`)."""


def _modal_parts(usage: Usage, uncached_input: int, output: int) -> list[tuple[int, str, str]]:
    """(count, price field, side) of each part the usage reports, clamped into the uncached input or the output
    they belong to, so no token is billed twice."""
    room = {"input": max(uncached_input, 0), "output": max(output, 0)}
    parts = []
    for usage_field, price_field, side, _ in MODAL_PARTS:
        count = min(max(getattr(usage, usage_field), 0), room[side])
        if count:
            room[side] -= count
            parts.append((count, price_field, side))
    return parts


def worst_case_output_tokens(price: Price, prompt_tokens: int, max_output_tokens: int | None) -> int:
    """The most output a call may produce: the client's limit capped by the model's, else the model's cap, else
    what is left of the context window, else :data:`DEFAULT_MAX_OUTPUT_TOKENS`."""
    cap = price.max_output_tokens
    if max_output_tokens is not None and max_output_tokens >= 0:
        return max_output_tokens if cap is None else min(max_output_tokens, cap)
    if cap is not None:
        return cap
    if price.context_window is not None:
        return max(price.context_window - max(prompt_tokens, 0), 0)
    return DEFAULT_MAX_OUTPUT_TOKENS


def worst_case_cost(
    price: Price, prompt_tokens: int, max_output_tokens: int | None, multiplier: RatioLike = 1
) -> Micros:
    """The most a call can cost, to reserve before it starts: every prompt token at the dearest input rate
    (cache writes may cost more than plain input), the worst-case output (:func:`worst_case_output_tokens`), the
    flat fee, the long-context rates if the prompt is past their threshold.

    Never below :func:`cost_of_tokens` for a usage within those bounds (input ≤ ``prompt_tokens``, output ≤ the
    worst-case output, same multiplier).
    """
    if price.free:
        return 0
    prompt = prompt_tokens if prompt_tokens > 0 else 0
    out = worst_case_output_tokens(price, prompt, max_output_tokens)
    rates = price.token_rates if price.long_rates is None else _token_rates(price, prompt)
    scaled = prompt * rates.dearest_input + out * rates.dearest_output + rates.flat
    return _scaled(scaled, 1, TOKENS_PER_MTOK, multiplier)


def _scaled(amount: Micros, quantity_num: int, quantity_den: int, multiplier: RatioLike) -> Micros:
    """``amount x quantity_num / quantity_den x multiplier``, rounded up once (``money.ceil_div`` inlined: every
    denominator here is positive)."""
    if type(multiplier) is Fraction:  # how keys carry their group's multiplier: skip as_ratio's dispatch
        num, den = multiplier.as_integer_ratio()
        if num < 0:
            raise ValueError(f"multiplier must not be negative: {multiplier}")
    else:
        num, den = as_ratio(multiplier)
    return -(-(amount * quantity_num * num) // (quantity_den * den))


def _count(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative int, got {value!r}")
    return value


def unit_amount(options: Mapping[str, int], *keys: str | None) -> Micros:
    """The first of ``keys`` present in ``options`` (``None`` keys skipped), else its ``"default"``."""
    for key in keys:
        if key is not None:
            amount = options.get(key)
            if amount is not None:
                return amount
    return options["default"]


def image_unit_price(price: Price, size: str | None = None, quality: str | None = None) -> Micros:
    """One image's price: key ``"size/quality"``, else ``"size"``, else ``"quality"``, else ``"default"``."""
    if price.free:
        return 0
    if price.per_image is None:
        raise PriceUnavailable("model is not priced per image")
    both = f"{size}/{quality}" if size and quality else None
    return unit_amount(price.per_image, both, size, quality)


def cost_of_images(
    price: Price,
    count: int = 1,
    *,
    size: str | None = None,
    quality: str | None = None,
    multiplier: RatioLike = 1,
) -> Micros:
    """``count`` images of ``size``/``quality`` (see :func:`image_unit_price`)."""
    unit = image_unit_price(price, size, quality)
    return _scaled(unit, _count(count, "image count"), 1, multiplier)


def cost_of_seconds(price: Price, seconds: RatioLike, multiplier: RatioLike = 1) -> Micros:
    """Audio or video by duration; ``seconds`` may be fractional (``Decimal("12.34")``, ``"12.34"``)."""
    if price.free:
        return 0
    if price.per_second is None:
        raise PriceUnavailable("model is not priced per second")
    num, den = as_ratio(seconds, what="seconds")
    return _scaled(price.per_second, num, den, multiplier)


def cost_of_chars(price: Price, chars: int, multiplier: RatioLike = 1) -> Micros:
    """Speech synthesis by input characters."""
    if price.free:
        return 0
    if price.per_1k_chars is None:
        raise PriceUnavailable("model is not priced per character")
    return _scaled(price.per_1k_chars, _count(chars, "character count"), 1000, multiplier)


def cost_of_task(price: Price, option: str | None = None, *, count: int = 1, multiplier: RatioLike = 1) -> Micros:
    """``count`` async tasks with ``option`` (``"relax"``, ``"pro/10s"``; unknown or ``None`` → ``"default"``)."""
    if price.free:
        return 0
    if price.per_task is None:
        raise PriceUnavailable("model is not priced per task")
    return _scaled(unit_amount(price.per_task, option), _count(count, "task count"), 1, multiplier)


def cost_of_call(price: Price, multiplier: RatioLike = 1) -> Micros:
    """The flat ``per_request`` fee alone, for a successful call whose upstream reports no tokens."""
    if price.free:
        return 0
    return _scaled(price.per_request, 1, 1, multiplier)


def describe_token_cost(price: Price, usage: Usage, multiplier: RatioLike = 1) -> str:
    """The formula behind :func:`cost_of_tokens`, for a log row: ``"100 in x $2.50/M + 20 out x $10.00/M = ..."``."""
    total = cost_of_tokens(price, usage, multiplier)
    if price.free:
        return "free = $0.000000"
    inp, cached, write = (max(n, 0) for n in (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens))
    rates = _token_rates(price, max(inp, cached + write))
    out = max(usage.output_tokens, 0)
    parts = _modal_parts(usage, inp - cached - write, out)
    labels = {field: label for _, field, _, label in MODAL_PARTS}
    special = {side: sum(count for count, _, part_side in parts if part_side == side) for side in ("input", "output")}
    terms = []
    for count, label, rate in (
        (max(inp - cached - write - special["input"], 0), "in", rates.input_per_mtok),
        (cached, "cached", rates.cached_input_per_mtok),
        (write, "cache-write", rates.cache_write_per_mtok),
        (out - special["output"], "out", rates.output_per_mtok),
        *((count, labels[field], getattr(rates, field)) for count, field, _ in parts),
    ):
        if count:
            terms.append(f"{count} {label} x ${micros_to_usd_str(rate, trim=True)}/M")
    if terms and price.per_request:
        terms.append(f"${micros_to_usd_str(price.per_request, trim=True)}/call")
    formula = " + ".join(terms) or "0"
    if rates is not price.token_rates:
        formula = f"({formula}; long-context rates)"
    num, den = as_ratio(multiplier)
    if (num, den) != (1, 1):
        formula = f"({formula}) x {_ratio_text(num, den)}"
    return f"{formula} = ${micros_to_usd_str(total)}"


def _ratio_text(num: int, den: int) -> str:
    value = Decimal(num) / Decimal(den)
    if value * den == num:
        return format(value.normalize(), "f")
    return f"{num}/{den}"
