"""Unit meters: what is reserved never falls short of what is then charged, a call that delivered nothing costs
nothing, and each meter bills by the unit its price sells (tokens when the answer reports them)."""

from __future__ import annotations

from fractions import Fraction

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnirelay.billing.cost import PriceUnavailable
from omnirelay.billing.meters import CallMeter, CharsMeter, ImageMeter, SecondsMeter
from omnirelay.billing.prices import PriceTable
from omnirelay.formats.usage import Usage

PRICES = PriceTable()
multipliers = st.sampled_from([1, Fraction(4, 5), Fraction(3, 2), 2])


def image_answer(count: int, usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, object] = {"created": 1, "data": [{"b64_json": "AA=="}] * count}
    if usage is not None:
        body["usage"] = usage
    return orjson.dumps(body)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["dall-e-2", "dall-e-3", "flux-pro"]),
    st.integers(min_value=1, max_value=10),
    st.data(),
    st.sampled_from([None, "256x256", "1024x1024", "1792x1024", "auto"]),
    st.sampled_from([None, "standard", "hd", "auto"]),
    multipliers,
)
def test_images_reserved_covers_charged(
    model: str, requested: int, data: st.DataObject, size: str | None, quality: str | None, multiplier: Fraction
) -> None:
    price = PRICES.get(model)
    assert price is not None
    meter = ImageMeter(requested, size, quality)
    worst = meter.worst_case(price, multiplier)
    returned = data.draw(st.integers(min_value=0, max_value=requested))
    meter.read(image_answer(returned))
    charged = meter.cost(price, Usage(), multiplier)
    assert 0 <= charged <= worst
    assert (charged == 0) == (returned == 0)


def test_gpt_image_billed_by_reported_tokens_else_per_image() -> None:
    price = PRICES.get("gpt-image-1")
    assert price is not None
    by_tokens = ImageMeter(1, "1024x1024", "low")
    by_tokens.read(image_answer(1, {"input_tokens": 20, "output_tokens": 272}))
    assert by_tokens.cost(price, Usage(), 1) == -(-(20 * 5_000_000 + 272 * 40_000_000) // 1_000_000)
    by_image = ImageMeter(2, "1024x1024", "low")
    by_image.read(image_answer(2))
    assert by_image.cost(price, Usage(), 1) == 2 * 11_000


def test_input_images_and_input_audio_cost_their_own_rates() -> None:
    """An edit's input images (gpt-image-1: $10/M, text $5/M) and a transcription's audio (gpt-4o-transcribe:
    $6/M, text $2.50/M) as the answers' token details report them; images call the details input_tokens_details,
    transcriptions input_token_details."""
    image = PRICES.get("gpt-image-1")
    assert image is not None
    edit = ImageMeter(1, "1024x1024", "low", inputs=1)
    edit.read(
        image_answer(
            1,
            {
                "input_tokens": 420,
                "input_tokens_details": {"text_tokens": 20, "image_tokens": 400},  # type: ignore[dict-item]
                "output_tokens": 272,
            },
        )
    )
    assert edit.cost(image, Usage(), 1) == -(-(20 * 5_000_000 + 400 * 10_000_000 + 272 * 40_000_000) // 1_000_000)
    transcribe = PRICES.get("gpt-4o-transcribe")
    assert transcribe is not None
    meter = SecondsMeter(Fraction(30))
    answer = {
        "text": "hello",
        "usage": {
            "type": "tokens",
            "input_tokens": 300,
            "input_token_details": {"text_tokens": 0, "audio_tokens": 300},
            "output_tokens": 5,
            "total_tokens": 305,
        },
    }
    meter.read(orjson.dumps(answer))
    assert meter.cost(transcribe, Usage(), 1) == -(-(300 * 6_000_000 + 5 * 10_000_000) // 1_000_000)


def test_nothing_delivered_costs_nothing() -> None:
    for meter, model in (
        (ImageMeter(3, None, None), "dall-e-3"),
        (SecondsMeter(Fraction(30)), "whisper-1"),
        (CharsMeter(100), "tts-1"),
        (CallMeter(), "omni-moderation-latest"),
    ):
        price = PRICES.get(model)
        assert price is not None
        assert meter.cost(price, Usage(), 1) == 0


@settings(max_examples=100, deadline=None)
@given(st.fractions(min_value=0, max_value=3600), multipliers)
def test_seconds_reserved_equals_charged(seconds: Fraction, multiplier: Fraction) -> None:
    price = PRICES.get("whisper-1")
    assert price is not None
    meter = SecondsMeter(seconds)
    worst = meter.worst_case(price, multiplier)
    meter.read(b'{"text": "hi", "usage": {"type": "duration", "seconds": 99999}}')  # the upstream's clock is ignored
    assert meter.cost(price, Usage(), multiplier) == worst


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=4096), st.sampled_from(["tts-1", "tts-1-hd", "gpt-4o-mini-tts"]))
def test_speech_reserved_covers_charged(chars: int, model: str) -> None:
    price = PRICES.get(model)
    assert price is not None
    meter = CharsMeter(chars)
    worst = meter.worst_case(price, 1)
    meter.delivered()
    tail = b'data: {"type":"speech.audio.done","usage":{"input_tokens":%d,"output_tokens":%d}}\n\n' % (
        chars,
        chars * 4,
    )
    meter.read(tail)
    assert 0 <= meter.cost(price, Usage(), 1) <= worst


def test_unit_the_price_does_not_sell_is_refused_at_admission() -> None:
    chat = PRICES.get("gpt-4o-mini")
    assert chat is not None
    with pytest.raises(PriceUnavailable):
        SecondsMeter(Fraction(10)).worst_case(chat.__class__(per_request=0), 1)
    with pytest.raises(PriceUnavailable):
        CharsMeter(10).worst_case(chat.__class__(), 1)
