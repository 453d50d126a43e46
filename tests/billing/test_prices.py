"""The shipped price table, overrides, name resolution and the cost functions."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction
from importlib import resources
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnirelay.billing.cost import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    PriceUnavailable,
    cost_of_call,
    cost_of_chars,
    cost_of_images,
    cost_of_seconds,
    cost_of_task,
    cost_of_tokens,
    describe_token_cost,
    image_unit_price,
    worst_case_cost,
    worst_case_output_tokens,
)
from omnirelay.billing.prices import (
    LongContext,
    Price,
    PriceTable,
    price_from_spec,
    price_to_spec,
    shipped_as_of,
    shipped_prices,
)
from omnirelay.formats.usage import Usage

M = 1_000_000  # micros per USD


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable()


def _raw() -> dict[str, Any]:
    text = resources.files("omnirelay").joinpath("data/prices.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


# ---- the shipped file ------------------------------------------------------------------------------------------


def test_shipped_file_holds_usd_as_strings_only() -> None:
    money_keys = {
        "input_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok", "output_per_mtok",
        "per_request", "per_second", "per_1k_chars",
    }  # fmt: skip

    def walk(where: str, spec: dict[str, Any]) -> None:
        for key, value in spec.items():
            if key in money_keys:
                assert isinstance(value, str), f"{where}.{key}"
            elif key in ("per_image", "per_task"):
                assert all(isinstance(v, str) for v in value.values()), f"{where}.{key}"
            elif key == "long_context":
                walk(f"{where}.long_context", value)

    for model, spec in _raw()["models"].items():
        walk(model, spec)


def test_shipped_table_loads_and_covers_every_vendor() -> None:
    prices = shipped_prices()
    assert shipped_as_of()
    for model in (
        "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1", "o3", "o3-mini", "o4-mini",
        "gpt-5", "gpt-5-mini", "gpt-5-nano", "text-embedding-3-small", "dall-e-3", "gpt-image-1", "whisper-1",
        "tts-1", "claude-3-5-sonnet", "claude-3-7-sonnet", "claude-sonnet-4", "claude-opus-4-1", "claude-sonnet-4-5",
        "claude-3-5-haiku", "claude-haiku-4-5", "gemini-2.0-flash", "gemini-2.5-flash", "gemini-2.5-pro",
        "gemini-2.5-flash-lite", "text-embedding-004", "gemini-embedding-001", "deepseek-chat", "deepseek-reasoner",
        "mj_imagine", "suno_music", "kling-v2-1", "gen4_turbo", "ray-2", "veo-3.0-generate-001", "flux-pro-1.1",
    ):  # fmt: skip
        assert model in prices, model


def test_every_alias_points_at_a_shipped_entry(table: PriceTable) -> None:
    for alias, target in _raw()["aliases"].items():
        assert table.resolve(alias) == target


def test_notes_mark_estimates() -> None:
    prices = shipped_prices()
    assert prices["mj_imagine"].estimated
    assert not prices["gpt-4o"].estimated
    assert all(p.estimated == (p.note or "").startswith("estimated") for p in prices.values())


def test_known_list_prices(table: PriceTable) -> None:
    gpt4o = table.get("gpt-4o")
    assert gpt4o is not None
    assert (gpt4o.input_per_mtok, gpt4o.cached_input_per_mtok, gpt4o.output_per_mtok) == (2_500_000, 1_250_000, 10 * M)
    assert gpt4o.max_output_tokens == 16384
    sonnet = table.get("claude-3-5-sonnet-20241022")
    assert sonnet is not None
    assert (sonnet.input_per_mtok, sonnet.cache_write_per_mtok, sonnet.cached_input_per_mtok) == (
        3 * M,
        3_750_000,
        300_000,
    )


def test_anthropic_cache_writes_cost_five_quarters_of_input() -> None:
    for model, price in shipped_prices().items():
        # Claude 3 Haiku is listed rounded: writes 0.30 and reads 0.03 on a 0.25 input.
        if model.startswith("claude") and model != "claude-3-haiku":
            assert price.cache_write_per_mtok * 4 == price.input_per_mtok * 5, model
            assert price.cached_input_per_mtok * 10 == price.input_per_mtok, model


def test_cached_and_write_rates_default_to_input() -> None:
    gpt4 = shipped_prices()["gpt-4"]
    assert gpt4.cached_input_per_mtok == gpt4.cache_write_per_mtok == gpt4.input_per_mtok == 30 * M
    assert Price(input_per_mtok=7).cached_input_per_mtok == 7


def test_every_shipped_price_round_trips_through_its_spec() -> None:
    for model, price in shipped_prices().items():
        assert price_from_spec(price_to_spec(price)) == price, model


# ---- resolution ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "entry"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("o1-mini-2024-09-12", "o1-mini"),
        ("o3-mini-high", "o3-mini"),
        ("gpt-5-codex", "gpt-5"),
        ("gpt-5.1-codex", "gpt-5.1"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("claude-3-7-sonnet-20250219-thinking", "claude-3-7-sonnet"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-3.5-sonnet", "claude-3-5-sonnet"),
        ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
        ("gemini-2.5-flash-lite-preview-06-17", "gemini-2.5-flash-lite"),
        ("gemini-1.5-pro-latest", "gemini-1.5-pro"),
        ("veo3-fast", "veo-3.0-fast-generate-001"),
        ("veo3.1", "veo-3.1-generate-preview"),
        ("imagen4-fast-001", "imagen-4.0-fast-generate-001"),
    ],
)
def test_dated_and_suffixed_names_resolve_to_the_longest_listed_prefix(
    table: PriceTable, model: str, entry: str
) -> None:
    assert table.resolve(model) == entry
    assert table.get(model) is table.get(entry)


@pytest.mark.parametrize(
    "model", ["", "-", "gpt", "gpt-4oo", "gpt-5.9", "o", "llama-3-70b", "gpt-4o ", "GPT-4O", "-gpt-4o"]
)
def test_unknown_models_are_unpriced(table: PriceTable, model: str) -> None:
    assert table.get(model) is None
    assert table.resolve(model) is None
    assert model not in table


def test_prefixes_end_at_a_dash() -> None:
    table = PriceTable({"acme": {"input_per_mtok": 1, "output_per_mtok": 1}}, include_shipped=False)
    assert table.resolve("acme-2") == "acme"
    assert table.resolve("acmes") is None
    assert table.resolve("acme.2") is None


# ---- overrides -------------------------------------------------------------------------------------------------


def test_config_shaped_overrides_with_floats() -> None:
    table = PriceTable({"gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.60}})
    price = table.get("gpt-4o-mini")
    assert price is not None
    assert (price.input_per_mtok, price.output_per_mtok) == (150_000, 600_000)
    assert price.cached_input_per_mtok == 75_000  # the shipped field stays


def test_override_merges_field_by_field_and_unset_rates_follow_input() -> None:
    table = PriceTable()
    price = table.override("gpt-4", {"input_per_mtok": "20"})
    assert price.output_per_mtok == 60 * M
    assert price.cached_input_per_mtok == price.cache_write_per_mtok == 20 * M


def test_override_of_a_dated_name_starts_from_the_entry_it_resolved_to() -> None:
    table = PriceTable({"gpt-4o-2024-11-20": {"output_per_mtok": "12"}})
    price = table.get("gpt-4o-2024-11-20")
    assert price is not None
    assert (price.input_per_mtok, price.output_per_mtok) == (2_500_000, 12 * M)
    assert table.resolve("gpt-4o-2024-11-20-extra") == "gpt-4o-2024-11-20"
    assert table.get("gpt-4o") == shipped_prices()["gpt-4o"]


def test_override_of_a_new_model_and_none_removes_a_field() -> None:
    table = PriceTable({"my-llm": {"input_per_mtok": "1", "output_per_mtok": "2", "max_output_tokens": 4096}})
    assert table.get("my-llm-v2") == Price(input_per_mtok=M, output_per_mtok=2 * M, max_output_tokens=4096)
    price = table.override("my-llm", {"max_output_tokens": None})
    assert price.max_output_tokens is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"input_per_mtk": 1}, "input_per_mtk"),
        ({"input_per_mtok": -1}, "negative"),
        ({"input_per_mtok": "abc"}, "not a number"),
        ({"input_per_mtok": True}, "USD amount"),
        ({"per_image": {"1024x1024": "0.04"}}, "default"),
        ({"max_output_tokens": 1.5}, "max_output_tokens"),
        ({"free": "yes"}, "free"),
        ({"long_context": {"threshold": 10, "input_per_mtok": 0, "output_per_mtok": 0}}, "below"),
        ({"long_context": {"input_per_mtok": 9}}, "threshold"),
    ],
)
def test_bad_overrides_name_the_model_and_the_field(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        PriceTable({"gpt-4o": spec})
    assert "gpt-4o" in str(info.value)


def test_set_remove_reset_items() -> None:
    table = PriceTable()
    custom = Price(input_per_mtok=1, output_per_mtok=2)
    table.set("gpt-4o-mini", custom)
    assert table.get("gpt-4o-mini-2024-07-18") is custom
    assert table.override("gpt-4o-mini", {"output_per_mtok": "0.000003"}).input_per_mtok == 1
    table.reset("gpt-4o-mini")
    assert table.get("gpt-4o-mini") == shipped_prices()["gpt-4o-mini"]
    assert table.remove("gpt-4o-mini")
    assert not table.remove("gpt-4o-mini")
    assert table.resolve("gpt-4o-mini") == "gpt-4o"  # falls back to a shorter prefix, deterministically
    table.set("zz-new", custom)
    table.reset("zz-new")
    assert table.get("zz-new") is None
    names = [name for name, _ in table.items()]
    assert names == sorted(names) and len(names) == len(table)
    assert PriceTable().get("gpt-4o-mini") == shipped_prices()["gpt-4o-mini"]  # tables are independent


def test_aliases_can_be_added() -> None:
    table = PriceTable()
    table.alias("house-model", "gpt-4.1-mini")
    assert table.get("house-model-7") is table.get("gpt-4.1-mini")
    assert table.aliases["house-model"] == "gpt-4.1-mini"


def test_prices_are_hashable_and_frozen() -> None:
    price = shipped_prices()["dall-e-3"]
    hash(price)
    assert price.per_image is not None
    with pytest.raises(TypeError):
        price.per_image["default"] = 0  # type: ignore[index]


# ---- token costs -----------------------------------------------------------------------------------------------


def test_token_cost_by_part(table: PriceTable) -> None:
    gpt4o = table.get("gpt-4o")
    assert gpt4o is not None
    usage = Usage(input_tokens=1000, cached_input_tokens=200, output_tokens=500, reasoning_tokens=100)
    # 800 x 2.50 + 200 x 1.25 + 500 x 10.00 per million = $0.00725
    assert cost_of_tokens(gpt4o, usage) == 7250
    assert cost_of_tokens(gpt4o, usage, "0.8") == 5800
    assert cost_of_tokens(gpt4o, usage, 2) == 14500


def test_anthropic_cache_reads_and_writes(table: PriceTable) -> None:
    sonnet = table.get("claude-sonnet-4-5-20250929")
    assert sonnet is not None
    usage = Usage(input_tokens=10_000, cached_input_tokens=6_000, cache_write_tokens=3_000, output_tokens=100)
    # 1000 x 3 + 6000 x 0.30 + 3000 x 3.75 + 100 x 15 per million
    assert cost_of_tokens(sonnet, usage) == 3000 + 1800 + 11250 + 1500


def test_one_token_rounds_up_to_one_micro(table: PriceTable) -> None:
    mini = table.get("gpt-4o-mini")
    assert mini is not None
    assert cost_of_tokens(mini, Usage(input_tokens=1)) == 1
    assert cost_of_tokens(mini, Usage(input_tokens=1), 0) == 0
    assert cost_of_tokens(mini, Usage()) == 0


def test_long_context_rates_apply_to_the_whole_call(table: PriceTable) -> None:
    pro = table.get("gemini-2.5-pro")
    assert pro is not None
    assert cost_of_tokens(pro, Usage(input_tokens=200_000, output_tokens=1000)) == 250_000 + 10_000
    assert cost_of_tokens(pro, Usage(input_tokens=200_001, output_tokens=1000)) == 500_003 + 15_000
    assert "long-context" in describe_token_cost(pro, Usage(input_tokens=300_000))


def test_flat_fee_only_when_tokens_were_used() -> None:
    price = Price(input_per_mtok=M, output_per_mtok=M, per_request=35_000)
    assert cost_of_tokens(price, Usage(input_tokens=1)) == 35_001
    assert cost_of_tokens(price, Usage()) == 0
    assert cost_of_call(price, "0.5") == 17_500


def test_free_models_cost_nothing(table: PriceTable) -> None:
    free = table.get("omni-moderation-2024-09-26")
    assert free is not None and free.free
    assert cost_of_tokens(free, Usage(input_tokens=10**6)) == 0
    assert worst_case_cost(free, 10**6, None) == 0
    assert cost_of_images(free, 3) == 0


def test_odd_usage_never_charges_negative() -> None:
    price = Price(input_per_mtok=M, output_per_mtok=2 * M, cached_input_per_mtok=M // 10)
    assert cost_of_tokens(price, Usage(input_tokens=-5, output_tokens=-1)) == 0
    # an adapter that reports more cached tokens than input: cached tokens are still billed, nothing negative
    assert cost_of_tokens(price, Usage(input_tokens=10, cached_input_tokens=20)) == 2


def test_describe_token_cost(table: PriceTable) -> None:
    gpt4o = table.get("gpt-4o")
    assert gpt4o is not None
    text = describe_token_cost(gpt4o, Usage(input_tokens=1000, cached_input_tokens=200, output_tokens=500), "0.8")
    assert text == "(800 in x $2.50/M + 200 cached x $1.25/M + 500 out x $10.00/M) x 0.8 = $0.005800"


# ---- worst case ------------------------------------------------------------------------------------------------


def test_worst_case_uses_the_model_cap_when_the_client_sends_none(table: PriceTable) -> None:
    gpt4o = table.get("gpt-4o")
    assert gpt4o is not None
    assert worst_case_output_tokens(gpt4o, 100, None) == 16384
    assert worst_case_output_tokens(gpt4o, 100, 50) == 50
    assert worst_case_output_tokens(gpt4o, 100, 10**9) == 16384
    assert worst_case_cost(gpt4o, 1000, None) == 2500 + 163_840
    assert worst_case_output_tokens(Price(context_window=1000), 300, None) == 700
    assert worst_case_output_tokens(Price(), 300, None) == DEFAULT_MAX_OUTPUT_TOKENS


def test_worst_case_prices_prompt_tokens_at_the_dearest_input_rate(table: PriceTable) -> None:
    haiku = table.get("claude-haiku-4-5")
    assert haiku is not None
    assert worst_case_cost(haiku, 1000, 0) == 1250  # every prompt token could be a cache write


rates = st.integers(min_value=0, max_value=100_000_000)


@st.composite
def priced_calls(draw: st.DrawFn) -> tuple[Price, int, int | None, Usage, Fraction]:
    base = [draw(rates) for _ in range(4)]
    long = None
    if draw(st.booleans()):
        long = LongContext(
            threshold=draw(st.integers(min_value=0, max_value=5000)),
            input_per_mtok=base[0] + draw(rates),
            output_per_mtok=base[1] + draw(rates),
            cached_input_per_mtok=base[2] + draw(rates),
            cache_write_per_mtok=base[3] + draw(rates),
        )
    price = Price(
        input_per_mtok=base[0],
        output_per_mtok=base[1],
        cached_input_per_mtok=base[2],
        cache_write_per_mtok=base[3],
        per_request=draw(st.integers(min_value=0, max_value=50_000)),
        max_output_tokens=draw(st.none() | st.integers(min_value=0, max_value=20_000)),
        context_window=draw(st.none() | st.integers(min_value=0, max_value=40_000)),
        long_context=long,
    )
    prompt = draw(st.integers(min_value=0, max_value=10_000))
    client_max = draw(st.none() | st.integers(min_value=0, max_value=30_000))
    out_cap = worst_case_output_tokens(price, prompt, client_max)
    inp = draw(st.integers(min_value=0, max_value=prompt))
    cached = draw(st.integers(min_value=0, max_value=inp))
    write = draw(st.integers(min_value=0, max_value=inp - cached))
    usage = Usage(
        input_tokens=inp,
        cached_input_tokens=cached,
        cache_write_tokens=write,
        output_tokens=draw(st.integers(min_value=0, max_value=out_cap)),
    )
    return price, prompt, client_max, usage, draw(st.fractions(min_value=0, max_value=5, max_denominator=100))


@settings(max_examples=40)
@given(priced_calls())
def test_worst_case_is_never_below_the_actual_cost(call: tuple[Price, int, int | None, Usage, Fraction]) -> None:
    price, prompt, client_max, usage, multiplier = call
    assert worst_case_cost(price, prompt, client_max, multiplier) >= cost_of_tokens(price, usage, multiplier)


# ---- unit costs ------------------------------------------------------------------------------------------------


def test_image_costs(table: PriceTable) -> None:
    dalle = table.get("dall-e-3")
    assert dalle is not None
    assert cost_of_images(dalle) == 40_000
    assert cost_of_images(dalle, 2, size="1792x1024", quality="hd") == 240_000
    assert cost_of_images(dalle, size="1024x1792") == 80_000
    assert cost_of_images(dalle, size="999x999", quality="weird") == 40_000
    assert cost_of_images(dalle, 3, multiplier="0.8") == 96_000
    image1 = table.get("gpt-image-1")
    assert image1 is not None
    assert image_unit_price(image1, quality="low") == 11_000
    assert image_unit_price(image1, "1536x1024", "high") == 250_000
    assert image_unit_price(image1, "1536x1024", "auto") == 167_000
    with pytest.raises(ValueError):
        cost_of_images(dalle, -1)


def test_second_char_and_task_costs(table: PriceTable) -> None:
    whisper = table.get("whisper-1")
    assert whisper is not None
    assert cost_of_seconds(whisper, 60) == 6000  # $0.006 per minute
    assert cost_of_seconds(whisper, Decimal("12.345")) == 1235  # 1234.5 rounded up
    assert cost_of_seconds(whisper, "0.001") == 1
    tts = table.get("tts-1")
    assert tts is not None
    assert cost_of_chars(tts, 1000) == 15_000
    assert cost_of_chars(tts, 1) == 15
    mj = table.get("mj_imagine")
    assert mj is not None
    assert cost_of_task(mj) == 100_000
    assert cost_of_task(mj, "relax") == 50_000
    assert cost_of_task(mj, "no-such-mode", count=2, multiplier=Fraction(1, 2)) == 100_000
    veo = table.get("veo3")
    assert veo is not None
    assert cost_of_seconds(veo, 8) == 3_200_000


@pytest.mark.parametrize(
    "call",
    [
        lambda p: cost_of_images(p),
        lambda p: cost_of_seconds(p, 1),
        lambda p: cost_of_chars(p, 1),
        lambda p: cost_of_task(p),
    ],
)
def test_a_unit_the_model_is_not_sold_by_raises(table: PriceTable, call: Any) -> None:
    gpt4o = table.get("gpt-4o")
    with pytest.raises(PriceUnavailable):
        call(gpt4o)
