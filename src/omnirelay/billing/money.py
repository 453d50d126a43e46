"""Money as integer micro-USD, and the one rounding rule.

Every amount the gateway stores, compares or charges is an ``int`` of micro-USD (1e-6 USD). Decimal strings
appear only at the edges (config, JSON, display); floats are accepted there but converted through their shortest
``repr`` (``Decimal(str(x))``), so ``0.1`` means exactly one tenth.

**The rounding rule.** A call's cost is computed exactly, as a fraction, from all its parts at once (every token
class, the flat fee, the group multiplier), with integer arithmetic only; that fraction is then rounded **up**
once to whole micros (:func:`ceil_div`). So a charge is never below the exact price (the operator never loses a
fraction of a micro per call), never more than 1 micro above it, and an exact cost of zero stays zero: nothing is
charged for nothing (unlike gateways that bill a minimum of one unit).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import TypeAlias

Micros: TypeAlias = int
"""An amount of micro-USD. A plain ``int``: arithmetic stays ``int`` without casts."""

MICROS_PER_USD = 1_000_000

UsdLike: TypeAlias = str | int | Decimal | float
RatioLike: TypeAlias = int | Fraction | Decimal | float | str


def _to_decimal(value: UsdLike | Fraction, what: str) -> Decimal:
    # bool is an int; a True price is a bug in the caller, not one dollar.
    if isinstance(value, bool):
        raise TypeError(f"{what}: expected a number, got a bool")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(str(value))
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError(f"{what}: empty string")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"{what}: not a number: {value!r}") from None
    else:
        raise TypeError(f"{what}: expected str, int, Decimal or float, got {type(value).__name__}")
    if not number.is_finite():
        raise ValueError(f"{what}: must be finite, got {value!r}")
    return number


def usd_to_micros(value: UsdLike, *, allow_negative: bool = False) -> Micros:
    """Exact conversion of a USD amount (``"2.50"``, ``2``, ``Decimal("0.075")``, ``0.15``) to micro-USD.

    Raises ``ValueError`` for NaN, infinities, negative amounts (unless ``allow_negative``, for adjustments) and
    amounts finer than one micro (``"0.0000005"``), which would otherwise be silently rounded.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0 and not allow_negative:
            raise ValueError(f"negative USD amount: {value}")
        return value * MICROS_PER_USD
    number = _to_decimal(value, "USD amount")
    if number < 0 and not allow_negative:
        raise ValueError(f"negative USD amount: {value!r}")
    scaled = number.scaleb(6)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"USD amount {value!r} is finer than one micro-USD (1e-6)")
    return int(scaled)


def micros_to_usd_str(micros: Micros, *, trim: bool = False) -> str:
    """``1234567`` → ``"1.234567"``; negative amounts keep their sign (``"-0.000001"``).

    With ``trim``, trailing zeros go but two decimals stay: ``2500000`` → ``"2.50"``, ``75000`` → ``"0.075"``
    (how prices are written in ``prices.json``).
    """
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_USD)
    digits = f"{frac:06d}"
    if trim:
        digits = digits.rstrip("0").ljust(2, "0")
    return f"{sign}{whole}.{digits}"


def micros_to_decimal(micros: Micros) -> Decimal:
    """The exact USD value of ``micros`` as a ``Decimal`` (for display and JSON)."""
    return Decimal(micros).scaleb(-6)


def ceil_div(numerator: int, denominator: int) -> int:
    """``⌈numerator / denominator⌉`` in integers (denominator > 0): the single round-up of the rounding rule."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    return -(-numerator // denominator)


def as_ratio(value: RatioLike, *, what: str = "multiplier") -> tuple[int, int]:
    """A non-negative rational (group multiplier, seconds, ...) as ``(numerator, denominator)``, denominator > 0.

    Accepts ``int``, ``Fraction``, ``Decimal``, decimal strings (``"0.8"``, as groups store it) and floats
    (through ``str``). Raises ``ValueError`` for negative, NaN or infinite values.
    """
    if type(value) is int:
        if value < 0:
            raise ValueError(f"{what} must not be negative: {value}")
        return value, 1
    if isinstance(value, Fraction):
        numerator = value.numerator
        if numerator < 0:
            raise ValueError(f"{what} must not be negative: {value}")
        return numerator, value.denominator
    number = _to_decimal(value, what)
    if number < 0:
        raise ValueError(f"{what} must not be negative: {value!r}")
    return number.as_integer_ratio()


def parse_multiplier(value: RatioLike) -> Fraction:
    """A group multiplier (``"0.8"``, ``1``, ``Decimal("1.25")``) as an exact ``Fraction``; parse once, reuse."""
    numerator, denominator = as_ratio(value)
    return Fraction(numerator, denominator)
