"""Meters for calls not priced by tokens alone: images, audio in, speech out, flat-fee calls (moderations).

A chat call's cost follows from its :class:`Usage`; these calls are priced by what they carry (the seconds of an
uploaded file, the characters to speak) or by what came back (the images returned). A meter is made per call by
the surface that parsed the request, and the relay drives it:

1. ``worst_case`` at admission: the amount reserved before anything is sent. It raises :class:`PriceUnavailable`
   when the model's price has no unit this call can be billed by, so such a call is refused before it starts.
2. ``read`` on a whole successful answer (``delivered`` instead, for a streamed one): what came back, as the usage
   of the call's row. A call that never reaches either costs nothing.
3. ``cost`` once, at settlement.

"Tokens where the vendor reports them": an image, transcription or SSE speech answer that carries token usage is
billed by those tokens when the model has token rates (gpt-image-1, gpt-4o-transcribe, gpt-4o-mini-tts); otherwise
by the unit. The unit price is required either way (it is what is reserved, and the fallback when no usage comes).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Final, Protocol

import orjson

from omnirelay.billing.cost import (
    cost_of_call,
    cost_of_chars,
    cost_of_images,
    cost_of_seconds,
    cost_of_tokens,
    image_unit_price,
)
from omnirelay.billing.money import Micros, RatioLike, as_ratio, ceil_div
from omnirelay.billing.prices import Price
from omnirelay.formats.usage import Usage

IMAGE_INPUT_TOKENS_RESERVE: Final = 6000
"""Reservation only: the input tokens one uploaded image may cost a token-billed image model (high fidelity)."""


class Meter(Protocol):
    def worst_case(self, price: Price, multiplier: RatioLike) -> Micros:
        """The most this call can cost; raises ``PriceUnavailable`` if the price has no unit for it."""
        ...

    def read(self, payload: bytes) -> Usage:
        """A whole successful answer arrived: note what it holds; its token usage (zeros when none)."""
        ...

    def delivered(self) -> None:
        """A streamed answer started reaching the client: the call is billable."""
        ...

    def cost(self, price: Price, usage: Usage, multiplier: RatioLike) -> Micros:
        """What the call costs once it ended (zero unless ``read`` or ``delivered`` was called)."""
        ...


def _has_token_rates(price: Price) -> bool:
    return price.input_per_mtok > 0 or price.output_per_mtok > 0


def _token_usage(raw: Any) -> Usage | None:
    """OpenAI's image and transcription usage (``{"input_tokens", "output_tokens", ...}``), if tokens."""
    if not isinstance(raw, dict) or raw.get("type", "tokens") != "tokens":
        return None
    inp, out = raw.get("input_tokens"), raw.get("output_tokens")
    if not isinstance(inp, int) or not isinstance(out, int):
        return None
    # Images call it input_tokens_details, transcriptions input_token_details.
    details = raw.get("input_tokens_details", raw.get("input_token_details"))
    details = details if isinstance(details, dict) else {}

    def part(name: str) -> int:
        value = details.get(name)
        return value if isinstance(value, int) and value > 0 else 0

    return Usage(
        input_tokens=inp,
        output_tokens=out,
        cached_input_tokens=part("cached_tokens"),
        image_input_tokens=part("image_tokens"),
        audio_input_tokens=part("audio_tokens"),
    )


def _json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def _last_event(tail: bytes, event_type: bytes) -> Any:
    """The last SSE event of ``event_type`` in a stream's ``tail`` (its ``data:`` JSON), or None."""
    marker = tail.rfind(b'"' + event_type + b'"')
    if marker < 0:
        return None
    start = tail.rfind(b"data:", 0, marker)
    end = tail.find(b"\n", marker)
    return _json(tail[start + 5 : end if end >= 0 else len(tail)]) if start >= 0 else None


class _Base:
    def __init__(self) -> None:
        self.done = False
        self.reported: Usage | None = None

    def delivered(self) -> None:
        self.done = True

    def read(self, payload: bytes) -> Usage:
        self.done = True
        return Usage()

    def _reported(self, answer: Any) -> Usage:
        """The token usage an answer (or a stream's last event) reports, kept for :meth:`cost`; zeros when none."""
        if isinstance(answer, dict):
            self.reported = _token_usage(answer.get("usage"))
        return self.reported or Usage()

    def cost(self, price: Price, usage: Usage, multiplier: RatioLike) -> Micros:
        """Nothing unless the call delivered; then tokens where the answer reported them and the model has token
        rates, else the meter's own unit."""
        if not self.done or price.free:
            return 0
        if self.reported is not None and _has_token_rates(price):
            return cost_of_tokens(price, self.reported, multiplier)
        return self._unit_cost(price, multiplier)

    def _unit_cost(self, price: Price, multiplier: RatioLike) -> Micros:
        """The call by the unit it is sold in (default: the flat ``per_request`` fee)."""
        return cost_of_call(price, multiplier)


class ImageMeter(_Base):
    """Per image returned, by size and quality; by tokens when the answer reports them (gpt-image-1)."""

    def __init__(self, count: int, size: str | None, quality: str | None, *, prompt_chars: int = 0, inputs: int = 0):
        super().__init__()
        self.requested = max(count, 1)
        self.size = size
        self.quality = quality
        self.prompt_chars = prompt_chars
        self.inputs = inputs
        self.returned = 0

    def worst_case(self, price: Price, multiplier: RatioLike) -> Micros:
        if price.free:
            return 0
        unit = image_unit_price(price, self.size, self.quality)  # PriceUnavailable: not sold per image
        if price.per_image is not None and (self.quality in (None, "auto") or self.size in (None, "auto")):
            unit = max(unit, *price.per_image.values())  # "auto" may pick the dearest option
        images = _scaled(unit * self.requested, multiplier)
        if not _has_token_rates(price):
            return images
        # Token-billed: the prompt (at most a token per character) and uploaded images on top of the output.
        input_tokens = self.prompt_chars + self.inputs * IMAGE_INPUT_TOKENS_RESERVE
        return images + cost_of_tokens(price, Usage(input_tokens=input_tokens), multiplier)

    def read(self, payload: bytes) -> Usage:
        self.done = True
        parsed = _json(payload)
        if isinstance(parsed, dict):
            data = parsed.get("data")
            self.returned = len(data) if isinstance(data, list) else 0
        return self._reported(parsed)

    def _unit_cost(self, price: Price, multiplier: RatioLike) -> Micros:
        return cost_of_images(price, self.returned, size=self.size, quality=self.quality, multiplier=multiplier)


class SecondsMeter(_Base):
    """Audio in (transcriptions, translations): per second of the uploaded file as the gateway measured it."""

    def __init__(self, seconds: Fraction) -> None:
        super().__init__()
        self.seconds = seconds

    def worst_case(self, price: Price, multiplier: RatioLike) -> Micros:
        # PriceUnavailable when not sold per second. A token-billed model (gpt-4o-transcribe) usually costs about its
        # per-second estimate; the few percent a long answer may cost above it are settled after the call.
        return cost_of_seconds(price, self.seconds, multiplier)

    def read(self, payload: bytes) -> Usage:
        self.done = True
        parsed = _json(payload) if payload[:1] == b"{" else _last_event(payload, b"transcript.text.done")
        return self._reported(parsed)

    def _unit_cost(self, price: Price, multiplier: RatioLike) -> Micros:
        return cost_of_seconds(price, self.seconds, multiplier)


class CharsMeter(_Base):
    """Speech: per character of the input text, billed once the audio starts flowing; by tokens when the stream
    reports them (``stream_format: sse`` ends with a ``speech.audio.done`` event carrying usage)."""

    def __init__(self, chars: int) -> None:
        super().__init__()
        self.chars = chars

    def worst_case(self, price: Price, multiplier: RatioLike) -> Micros:
        chars = cost_of_chars(price, self.chars, multiplier)  # PriceUnavailable: not sold per character
        if not _has_token_rates(price):
            return chars
        # Token-billed: at most a token per character in, and the longest audio OpenAI makes of it out.
        tokens = cost_of_tokens(price, Usage(input_tokens=self.chars, output_tokens=self.chars * 4), multiplier)
        return max(chars, tokens)

    def read(self, payload: bytes) -> Usage:
        """``payload``: the stream's last bytes."""
        self.done = True
        return self._reported(_last_event(payload, b"speech.audio.done"))

    def _unit_cost(self, price: Price, multiplier: RatioLike) -> Micros:
        return cost_of_chars(price, self.chars, multiplier)


class CallMeter(_Base):
    """A flat fee per successful call (``per_request``); moderation models ship free."""

    def worst_case(self, price: Price, multiplier: RatioLike) -> Micros:
        return cost_of_call(price, multiplier)


def _scaled(amount: Micros, multiplier: RatioLike) -> Micros:
    num, den = as_ratio(multiplier)
    return ceil_div(amount * num, den)
