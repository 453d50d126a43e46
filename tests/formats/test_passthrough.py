"""Same-format relaying: byte edits of the request and the OpenAI stream tap, under any split of the bytes."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from omnirelay.formats.passthrough import OpenAIPassthroughStream, ensure_stream_usage, replace_model


def chunk_event(content: str | None, finish: str | None = None, usage: bool = True) -> bytes:
    choice = {"index": 0, "delta": {} if content is None else {"content": content}, "finish_reason": finish}
    payload: dict[str, object] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [choice]}
    if usage:
        payload["usage"] = None
    return b"data: " + orjson.dumps(payload) + b"\n\n"


USAGE = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[],'
    b'"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}\n\n'
)
STREAM = (
    chunk_event("Hel")
    + chunk_event("lo")
    + chunk_event(" there", None)
    + chunk_event(None, "stop")
    + USAGE
    + b"data: [DONE]\n\n"
)


def run(tap: OpenAIPassthroughStream, data: bytes, cuts: list[int]) -> bytes:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    return b"".join(tap.feed(p) for p in pieces) + tap.finish()


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
@settings(max_examples=150)
def test_client_that_asked_for_usage_gets_the_bytes_unchanged(cuts: list[int]) -> None:
    tap = OpenAIPassthroughStream(hide_usage=False)
    assert run(tap, STREAM, cuts) == STREAM
    assert tap.finished and tap.usage is not None and tap.usage.output_tokens == 3
    assert "".join(tap.produced) == "Hello there"


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=12), st.booleans())
@settings(max_examples=150)
def test_usage_the_gateway_asked_for_is_hidden(cuts: list[int], crlf: bool) -> None:
    data = STREAM.replace(b"\n", b"\r\n") if crlf else STREAM
    tap = OpenAIPassthroughStream(hide_usage=True)
    out = run(tap, data, cuts)
    events = [e for e in out.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    for event in events[:-1]:
        payload = orjson.loads(event.removeprefix(b"data: "))
        assert "usage" not in payload and payload["choices"]
    assert tap.usage is not None and tap.usage.input_tokens == 7
    assert "".join(tap.produced) == "Hello there"


def test_cut_stream_is_not_finished_and_counts_what_came() -> None:
    tap = OpenAIPassthroughStream(hide_usage=True)
    run(tap, chunk_event("partial") + chunk_event(" answ"), [])
    assert not tap.finished and tap.usage is None
    assert "".join(tap.produced) == "partial answ"


def test_error_event_is_seen() -> None:
    tap = OpenAIPassthroughStream(hide_usage=False)
    out = run(tap, chunk_event("a") + b'data: {"error":{"message":"boom","type":"server_error"}}\n\n', [])
    assert tap.error == {"message": "boom", "type": "server_error"}
    assert b"boom" in out


def test_stream_options_are_added_without_touching_the_rest() -> None:
    raw = b'{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true, "temperature":1.50}'
    body = orjson.loads(raw)
    edited, hide = ensure_stream_usage(raw, body)
    assert hide
    assert orjson.loads(edited)["stream_options"] == {"include_usage": True}
    assert edited.endswith(b'"stream":true, "temperature":1.50}')
    _, hide = ensure_stream_usage(
        raw.replace(b'"stream":true', b'"stream":true,"stream_options":{"include_usage":true}'),
        {**body, "stream_options": {"include_usage": True}},
    )
    assert not hide


def test_model_replaced_only_at_top_level() -> None:
    raw = b'{"tools":[{"function":{"parameters":{"properties":{"model":{"type":"string"}}}}}],"model":"alias"}'
    assert replace_model(raw, orjson.loads(raw), "real") == raw.replace(b'"model":"alias"', b'"model":"real"')
