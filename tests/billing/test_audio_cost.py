"""Audio tokens priced apart from text tokens (gpt-4o-audio-preview: $40/M audio in, $80/M audio out)."""

from __future__ import annotations

from omnirelay.billing.cost import cost_of_tokens, describe_token_cost, worst_case_cost
from omnirelay.billing.prices import Price, price_from_spec, price_to_spec, shipped_prices
from omnirelay.formats.openai_chat import openai_usage_to_ir
from omnirelay.formats.usage import Usage

AUDIO = price_from_spec(
    {"input_per_mtok": "2.50", "output_per_mtok": "10.00", "audio_input_per_mtok": "40", "audio_output_per_mtok": "80"}
)


def test_audio_parts_cost_the_audio_rates() -> None:
    usage = Usage(input_tokens=1_000, output_tokens=500, audio_input_tokens=400, audio_output_tokens=300)
    # 600 text in x 2.50 + 400 audio in x 40 + 200 text out x 10 + 300 audio out x 80, per million tokens.
    assert (
        cost_of_tokens(AUDIO, usage)
        == (600 * 2_500_000 + 400 * 40_000_000 + 200 * 10_000_000 + 300 * 80_000_000) // 1_000_000
    )
    assert "400 audio in x $40.00/M" in describe_token_cost(AUDIO, usage)
    assert "300 audio out x $80.00/M" in describe_token_cost(AUDIO, usage)


def test_without_audio_rates_audio_costs_the_text_rates() -> None:
    plain = Price(input_per_mtok=2_500_000, output_per_mtok=10_000_000)
    usage = Usage(input_tokens=1_000, output_tokens=500, audio_input_tokens=400, audio_output_tokens=300)
    assert cost_of_tokens(plain, usage) == cost_of_tokens(plain, Usage(input_tokens=1_000, output_tokens=500))


def test_audio_counts_beyond_their_totals_are_clamped() -> None:
    usage = Usage(input_tokens=10, output_tokens=5, audio_input_tokens=99, audio_output_tokens=99)
    assert cost_of_tokens(AUDIO, usage) == -(-(10 * 40_000_000 + 5 * 80_000_000) // 1_000_000)


def test_worst_case_covers_an_all_audio_call() -> None:
    usage = Usage(input_tokens=1_000, output_tokens=2_000, audio_input_tokens=1_000, audio_output_tokens=2_000)
    assert worst_case_cost(AUDIO, 1_000, 2_000) >= cost_of_tokens(AUDIO, usage)


def test_spec_round_trip_and_shipped_audio_models() -> None:
    assert price_from_spec(price_to_spec(AUDIO)) == AUDIO
    shipped = shipped_prices()["gpt-4o-audio-preview"]
    assert (shipped.audio_input_per_mtok, shipped.audio_output_per_mtok) == (40_000_000, 80_000_000)


def test_openai_usage_details_give_the_audio_parts() -> None:
    usage = openai_usage_to_ir(
        {
            "prompt_tokens": 120,
            "completion_tokens": 60,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 40},
        }
    )
    assert (usage.audio_input_tokens, usage.audio_output_tokens) == (100, 40)
