"""The price table: one :class:`Price` per model, in integer micro-USD, and name resolution.

The shipped table lives in ``omnirelay/data/prices.json`` (USD as decimal strings, read once per process).
A :class:`PriceTable` starts from it and applies overrides shaped like the config file's ``prices:`` section
(``{model: {input_per_mtok: 0.15, output_per_mtok: 0.60}}``, USD as strings or numbers). The table is pure:
whoever persists overrides feeds them in with :meth:`PriceTable.override` and :meth:`PriceTable.reset`.

Name resolution (:meth:`PriceTable.resolve`) is deterministic:

1. an exact entry;
2. an exact alias (``"claude-3.5-sonnet"`` → ``"claude-3-5-sonnet"``);
3. the longest entry or alias ``K`` such that the name starts with ``K + "-"``: ``gpt-4o-mini-2024-07-18`` →
   ``gpt-4o-mini`` (not ``gpt-4o``), ``claude-sonnet-4-5-20250929`` → ``claude-sonnet-4-5``. A prefix never ends
   inside a word: ``gpt-5.1`` does not fall back to ``gpt-5``.

Otherwise the model is unpriced (``None``): the caller refuses it rather than guessing a price.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from types import MappingProxyType
from typing import Final

from omnirelay.billing.money import micros_to_usd_str, usd_to_micros

SAME_AS_INPUT: Final = -1
"""Default of the cached-read and cache-write rates: resolved to ``input_per_mtok`` when a price is made."""

_TOKEN_RATES = ("input_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok", "output_per_mtok")
_MODAL_RATES = ("audio_input_per_mtok", "audio_output_per_mtok", "image_input_per_mtok")
_MONEY = (*_TOKEN_RATES, *_MODAL_RATES, "per_request", "per_second", "per_1k_chars")
_MONEY_MAPS = ("per_image", "per_task")
_COUNTS = ("max_output_tokens", "context_window")
_FIELDS = frozenset((*_MONEY, *_MONEY_MAPS, *_COUNTS, "free", "long_context", "note"))
_LONG_FIELDS = frozenset(("threshold", *_TOKEN_RATES))

TOKENS_PER_MTOK: Final = 1_000_000
"""Token rates are per million tokens."""


def _check_amount(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int of micro-USD, got {value!r}")


def _frozen_map(name: str, value: Mapping[str, int] | None) -> Mapping[str, int] | None:
    if value is None:
        return None
    if "default" not in value:
        raise ValueError(f"{name} needs a 'default' entry, so every option has a price")
    for key, amount in value.items():
        _check_amount(f"{name}[{key!r}]", amount)
    return MappingProxyType(dict(value))


@dataclass(frozen=True, slots=True)
class LongContext:
    """Rates for the whole call when its prompt (cached tokens included) has more than ``threshold`` tokens.

    Each rate must be at least the base rate, so a longer prompt never costs less.
    """

    threshold: int
    input_per_mtok: int
    output_per_mtok: int
    cached_input_per_mtok: int = SAME_AS_INPUT
    cache_write_per_mtok: int = SAME_AS_INPUT

    def __post_init__(self) -> None:
        if self.cached_input_per_mtok == SAME_AS_INPUT:
            object.__setattr__(self, "cached_input_per_mtok", self.input_per_mtok)
        if self.cache_write_per_mtok == SAME_AS_INPUT:
            object.__setattr__(self, "cache_write_per_mtok", self.input_per_mtok)
        _check_amount("long_context.threshold", self.threshold)
        for name in _TOKEN_RATES:
            _check_amount(f"long_context.{name}", getattr(self, name))


@dataclass(frozen=True, slots=True)
class TokenRates:
    """The per-token rates a call is billed at (a price's own, or its long-context ones), with the audio and image
    rates resolved: a part the price has no rate for bills at its side's rate. Derived once when the
    :class:`Price` is made (prices never change once made), so a call's cost reads them instead of working them
    out each time.
    """

    input_per_mtok: int
    cached_input_per_mtok: int
    cache_write_per_mtok: int
    output_per_mtok: int
    audio_input_per_mtok: int
    image_input_per_mtok: int
    audio_output_per_mtok: int
    flat: int
    """``per_request`` x :data:`TOKENS_PER_MTOK`: the flat fee in the unit of a sum of tokens x rates."""
    modal_apart: bool
    """Some audio or image part bills at another rate than its side's: only then do the usage's counts of those
    parts change the cost."""
    dearest_input: int
    """The most one prompt token can cost (plain, cached, cache write, audio or image): what a reservation takes."""
    dearest_output: int
    """The most one output token can cost (text or audio)."""


def _resolve_rates(price: Price, rates: Price | LongContext) -> TokenRates:
    audio_in = rates.input_per_mtok if price.audio_input_per_mtok is None else price.audio_input_per_mtok
    image_in = rates.input_per_mtok if price.image_input_per_mtok is None else price.image_input_per_mtok
    audio_out = rates.output_per_mtok if price.audio_output_per_mtok is None else price.audio_output_per_mtok
    return TokenRates(
        input_per_mtok=rates.input_per_mtok,
        cached_input_per_mtok=rates.cached_input_per_mtok,
        cache_write_per_mtok=rates.cache_write_per_mtok,
        output_per_mtok=rates.output_per_mtok,
        audio_input_per_mtok=audio_in,
        image_input_per_mtok=image_in,
        audio_output_per_mtok=audio_out,
        flat=price.per_request * TOKENS_PER_MTOK,
        modal_apart=audio_in != rates.input_per_mtok
        or image_in != rates.input_per_mtok
        or audio_out != rates.output_per_mtok,
        dearest_input=max(
            rates.input_per_mtok, rates.cached_input_per_mtok, rates.cache_write_per_mtok, audio_in, image_in
        ),
        dearest_output=max(rates.output_per_mtok, audio_out),
    )


@dataclass(frozen=True, slots=True)
class Price:
    """What one model costs, every amount in integer micro-USD.

    Token rates are per million tokens. ``cached_input_per_mtok`` and ``cache_write_per_mtok`` default to the
    input rate (Anthropic charges 1.25x input for 5-minute cache writes, so its entries set it). Unit prices are
    ``None`` when the model is not sold by that unit; ``per_image`` and ``per_task`` map an option key to a price
    and always hold a ``"default"``. ``free`` makes every cost zero. ``note`` starting with ``"estimated"`` marks
    a price that is not a known vendor list price.
    """

    input_per_mtok: int = 0
    output_per_mtok: int = 0
    cached_input_per_mtok: int = SAME_AS_INPUT
    cache_write_per_mtok: int = SAME_AS_INPUT
    audio_input_per_mtok: int | None = None
    """Audio prompt tokens (gpt-4o-audio-preview ``input_audio``); None: the input rate."""
    audio_output_per_mtok: int | None = None
    """Audio answer tokens (``modalities: ["audio"]``); None: the output rate."""
    image_input_per_mtok: int | None = None
    """Image prompt tokens where the vendor counts them apart (gpt-image-1 edits); None: the input rate."""
    per_request: int = 0
    """Flat fee per call that used tokens."""
    per_image: Mapping[str, int] | None = field(default=None, hash=False)
    """By ``"size/quality"``, ``"size"`` or ``"quality"`` key, with a ``"default"``."""
    per_second: int | None = None
    """Audio in (transcription) or video out."""
    per_1k_chars: int | None = None
    """Speech synthesis input."""
    per_task: Mapping[str, int] | None = field(default=None, hash=False)
    """Async task by option (``"relax"``, ``"pro/10s"``), with a ``"default"``."""
    max_output_tokens: int | None = None
    """The model's output cap: the worst case reserved when the client sends no limit."""
    context_window: int | None = None
    free: bool = False
    long_context: LongContext | None = None
    note: str | None = field(default=None, compare=False)
    token_rates: TokenRates = field(init=False, repr=False, compare=False)
    """The price's own token rates, resolved (see :class:`TokenRates`)."""
    long_rates: TokenRates | None = field(init=False, repr=False, compare=False)
    """The ``long_context`` rates, resolved; ``None`` without them."""

    def __post_init__(self) -> None:
        if self.cached_input_per_mtok == SAME_AS_INPUT:
            object.__setattr__(self, "cached_input_per_mtok", self.input_per_mtok)
        if self.cache_write_per_mtok == SAME_AS_INPUT:
            object.__setattr__(self, "cache_write_per_mtok", self.input_per_mtok)
        for name in ("per_request", *_TOKEN_RATES):
            _check_amount(name, getattr(self, name))
        for name in ("per_second", "per_1k_chars", *_MODAL_RATES, *_COUNTS):
            value = getattr(self, name)
            if value is not None:
                _check_amount(name, value)
        object.__setattr__(self, "per_image", _frozen_map("per_image", self.per_image))
        object.__setattr__(self, "per_task", _frozen_map("per_task", self.per_task))
        long = self.long_context
        if long is not None:
            for name in _TOKEN_RATES:
                if getattr(long, name) < getattr(self, name):
                    raise ValueError(f"long_context.{name} is below the base {name}")
        object.__setattr__(self, "token_rates", _resolve_rates(self, self))
        object.__setattr__(self, "long_rates", None if long is None else _resolve_rates(self, long))

    @property
    def estimated(self) -> bool:
        return self.note is not None and self.note.startswith("estimated")


def price_from_spec(spec: Mapping[str, object]) -> Price:
    """A :class:`Price` from a USD mapping shaped like one ``prices.json`` / config ``prices:`` entry.

    Money is USD (``"2.50"``, ``2.5``, ``Decimal``); unknown fields raise ``ValueError`` naming them, so a typo in a
    config file is an error rather than a silently ignored price.
    """
    unknown = set(spec) - _FIELDS
    if unknown:
        raise ValueError(f"unknown price field(s): {', '.join(sorted(unknown))}")
    kwargs: dict[str, object] = {}
    for name, value in spec.items():
        if value is None:
            continue
        if name in _MONEY:
            kwargs[name] = usd_to_micros(_usd(name, value))
        elif name in _MONEY_MAPS:
            if not isinstance(value, Mapping):
                raise ValueError(f"{name} must be a mapping of option to USD")
            kwargs[name] = {str(k): usd_to_micros(_usd(f"{name}[{k!r}]", v)) for k, v in value.items()}
        elif name in _COUNTS:
            kwargs[name] = _count(name, value)
        elif name == "free":
            if not isinstance(value, bool):
                raise ValueError("free must be true or false")
            kwargs[name] = value
        elif name == "note":
            kwargs[name] = str(value)
        else:
            kwargs[name] = _long_context_from_spec(value)
    return Price(**kwargs)  # type: ignore[arg-type]


def _usd(name: str, value: object) -> str | int | float | Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"{name} must be a USD amount, got {value!r}")
    return value


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _long_context_from_spec(value: object) -> LongContext:
    if not isinstance(value, Mapping):
        raise ValueError("long_context must be a mapping")
    unknown = set(value) - _LONG_FIELDS
    if unknown:
        raise ValueError(f"unknown long_context field(s): {', '.join(sorted(map(str, unknown)))}")
    if "threshold" not in value or "input_per_mtok" not in value or "output_per_mtok" not in value:
        raise ValueError("long_context needs threshold, input_per_mtok and output_per_mtok")
    rates = {k: usd_to_micros(_usd(f"long_context.{k}", v)) for k, v in value.items() if k != "threshold"}
    return LongContext(threshold=_count("long_context.threshold", value["threshold"]), **rates)


def price_to_spec(price: Price) -> dict[str, object]:
    """The USD mapping of a price (inverse of :func:`price_from_spec`), for the admin API and persistence."""
    spec: dict[str, object] = {}
    for name in _TOKEN_RATES:
        amount = getattr(price, name)
        if name in ("input_per_mtok", "output_per_mtok") or amount != price.input_per_mtok:
            spec[name] = micros_to_usd_str(amount, trim=True)
    if price.per_request:
        spec["per_request"] = micros_to_usd_str(price.per_request, trim=True)
    for name in ("per_second", "per_1k_chars", *_MODAL_RATES):
        amount = getattr(price, name)
        if amount is not None:
            spec[name] = micros_to_usd_str(amount, trim=True)
    for name in _MONEY_MAPS:
        options = getattr(price, name)
        if options is not None:
            spec[name] = {k: micros_to_usd_str(v, trim=True) for k, v in options.items()}
    for name in _COUNTS:
        if getattr(price, name) is not None:
            spec[name] = getattr(price, name)
    if price.free:
        spec["free"] = True
    if price.long_context is not None:
        long = price.long_context
        spec["long_context"] = {"threshold": long.threshold} | {
            name: micros_to_usd_str(getattr(long, name), trim=True) for name in _TOKEN_RATES
        }
    if price.note is not None:
        spec["note"] = price.note
    return spec


@dataclass(frozen=True, slots=True)
class _Shipped:
    specs: Mapping[str, Mapping[str, object]]
    prices: Mapping[str, Price]
    aliases: Mapping[str, str]
    as_of: str


@functools.cache
def _shipped() -> _Shipped:
    text = resources.files("omnirelay").joinpath("data/prices.json").read_text(encoding="utf-8")
    data = json.loads(text)
    specs: dict[str, Mapping[str, object]] = {}
    prices: dict[str, Price] = {}
    for model, spec in data["models"].items():
        try:
            prices[model] = price_from_spec(spec)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"prices.json: {model}: {exc}") from exc
        specs[model] = MappingProxyType(dict(spec))
    aliases = dict(data.get("aliases", {}))
    for alias, target in aliases.items():
        if target not in prices:
            raise ValueError(f"prices.json: alias {alias!r} points at unknown model {target!r}")
    return _Shipped(MappingProxyType(specs), MappingProxyType(prices), MappingProxyType(aliases), data["as_of"])


def shipped_prices() -> Mapping[str, Price]:
    """The shipped table, parsed once per process (read-only)."""
    return _shipped().prices


def shipped_as_of() -> str:
    """When the shipped list prices were last checked (``"2025-11"``)."""
    return _shipped().as_of


class PriceTable:
    """Prices by model name: the shipped table plus overrides.

    Reads (:meth:`get`) are a dict lookup or a few, with no locks: every change builds new dicts and swaps them
    in, so a reader in another thread always sees a whole table.
    """

    def __init__(
        self,
        overrides: Mapping[str, Mapping[str, object]] | None = None,
        *,
        include_shipped: bool = True,
    ) -> None:
        shipped = _shipped()
        self._shipped_specs: Mapping[str, Mapping[str, object]] = shipped.specs if include_shipped else {}
        self._specs: dict[str, Mapping[str, object]] = dict(self._shipped_specs)
        self._prices: dict[str, Price] = dict(shipped.prices) if include_shipped else {}
        self._aliases: dict[str, str] = dict(shipped.aliases) if include_shipped else {}
        for model, spec in (overrides or {}).items():
            self.override(model, spec)

    def resolve(self, model: str) -> str | None:
        """The entry that prices ``model`` (exact, alias, then longest ``-``-bounded prefix), or ``None``."""
        prices, aliases = self._prices, self._aliases
        if model in prices:
            return model
        target = aliases.get(model)
        if target is not None and target in prices:
            return target
        end = model.rfind("-")
        while end > 0:
            prefix = model[:end]
            if prefix in prices:
                return prefix
            target = aliases.get(prefix)
            if target is not None and target in prices:
                return target
            end = model.rfind("-", 0, end)
        return None

    def get(self, model: str) -> Price | None:
        """The price of ``model`` (see :meth:`resolve`), or ``None`` when it is unpriced."""
        price = self._prices.get(model)
        if price is not None:
            return price
        entry = self.resolve(model)
        return None if entry is None else self._prices[entry]

    def set(self, model: str, price: Price) -> None:
        """Price ``model`` exactly (later :meth:`override` calls merge onto it)."""
        self._specs = {**self._specs, model: price_to_spec(price)}
        self._prices = {**self._prices, model: price}

    def override(self, model: str, spec: Mapping[str, object]) -> Price:
        """Merge a partial USD mapping (a config ``prices:`` entry) onto ``model``'s current entry and return it.

        The base is ``model``'s own entry, else the entry it resolves to (so ``{gpt-4o-2024-11-20:
        {output_per_mtok: 12}}`` starts from ``gpt-4o``), else nothing. Fields merge one by one (a ``per_image``
        map is replaced whole); ``None`` removes a field. Cached and cache-write rates not given anywhere keep
        following the input rate. Raises ``ValueError`` naming the model and the bad field.
        """
        entry = model if model in self._specs else self.resolve(model)
        base = self._specs.get(entry, {}) if entry is not None else {}
        merged = {k: v for k, v in {**base, **spec}.items() if v is not None}
        try:
            price = price_from_spec(merged)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"price of {model}: {exc}") from exc
        self._specs = {**self._specs, model: MappingProxyType(merged)}
        self._prices = {**self._prices, model: price}
        return price

    def remove(self, model: str) -> bool:
        """Drop ``model``'s own entry (names may then resolve through a shorter prefix). True if it existed."""
        if model not in self._prices:
            return False
        self._specs = {k: v for k, v in self._specs.items() if k != model}
        self._prices = {k: v for k, v in self._prices.items() if k != model}
        return True

    def reset(self, model: str) -> None:
        """Undo overrides of ``model``: back to its shipped entry, or no entry if it was not shipped."""
        spec = self._shipped_specs.get(model)
        if spec is None:
            self.remove(model)
            return
        self._specs = {**self._specs, model: spec}
        self._prices = {**self._prices, model: _shipped().prices[model]}

    def alias(self, name: str, target: str) -> None:
        """Make ``name`` (and names it prefixes) price as ``target``."""
        self._aliases = {**self._aliases, name: target}

    @property
    def aliases(self) -> Mapping[str, str]:
        return MappingProxyType(self._aliases)

    def spec(self, model: str) -> Mapping[str, object] | None:
        """The USD mapping behind ``model``'s own entry (not resolved), as shipped or overridden."""
        return self._specs.get(model)

    def items(self) -> list[tuple[str, Price]]:
        """Every entry, sorted by model name."""
        return sorted(self._prices.items())

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.get(model) is not None

    def __len__(self) -> int:
        return len(self._prices)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._prices))
