"""What a client sees: translated bodies and streams read back through the official SDKs' own types."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from google.genai import types as gtypes
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from omnirelay.formats.gemini_stream import GeminiFrameReader
from omnirelay.formats.ir import Format
from omnirelay.formats.sse import SSEParser

RAW_EVENT: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)


@dataclass
class Seen:
    """A client's view of one answer, in the client's own vocabulary."""

    text: str = ""
    thinking: str = ""
    calls: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    call_ids: list[str] = field(default_factory=list)
    finish: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    error: dict[str, object] | None = None


# --- OpenAI -------------------------------------------------------------------------------------------------


def openai_body(body: bytes) -> Seen:
    completion = ChatCompletion.model_validate_json(body)
    choice = completion.choices[0]
    seen = Seen(text=choice.message.content or "", finish=choice.finish_reason)
    extra = choice.message.model_extra or {}
    seen.thinking = str(extra.get("reasoning_content") or "")
    for call in choice.message.tool_calls or []:
        assert call.type == "function"
        seen.calls.append((call.function.name, orjson.loads(call.function.arguments)))
        seen.call_ids.append(call.id)
    if completion.usage is not None:
        seen.input_tokens = completion.usage.prompt_tokens
        seen.output_tokens = completion.usage.completion_tokens
        details = completion.usage.prompt_tokens_details
        seen.cached_tokens = (details.cached_tokens or 0) if details else 0
    return seen


def openai_chunks(stream: bytes) -> list[dict[str, object]]:
    parser = SSEParser()
    events = parser.feed(stream) + parser.flush()
    out: list[dict[str, object]] = []
    for event in events:
        assert event.event is None
        if event.data == "[DONE]":
            out.append({"[DONE]": True})
            continue
        out.append(orjson.loads(event.data))
    return out


def openai_stream(stream: bytes) -> Seen:
    state: ChatCompletionStreamState[object] = ChatCompletionStreamState()
    seen = Seen()
    done = False
    for data in openai_chunks(stream):
        assert not done, "nothing may follow [DONE]"
        if "[DONE]" in data:
            done = True
            continue
        if "error" in data:
            seen.error = data["error"]  # type: ignore[assignment]
            return seen
        chunk = ChatCompletionChunk.model_validate(data)
        list(state.handle_chunk(chunk))
        for choice in chunk.choices:
            extra = choice.delta.model_extra or {}
            seen.thinking += str(extra.get("reasoning_content") or "")
    assert done, "an OpenAI stream ends with [DONE]"
    final = state.get_final_completion()
    choice = final.choices[0]
    seen.text = choice.message.content or ""
    seen.finish = choice.finish_reason
    for call in choice.message.tool_calls or []:
        seen.calls.append((call.function.name, orjson.loads(call.function.arguments)))  # type: ignore[union-attr]
        seen.call_ids.append(call.id)
    if final.usage is not None:
        seen.input_tokens = final.usage.prompt_tokens
        seen.output_tokens = final.usage.completion_tokens
        details = final.usage.prompt_tokens_details
        seen.cached_tokens = (details.cached_tokens or 0) if details else 0
    return seen


# --- Anthropic ----------------------------------------------------------------------------------------------


def _anthropic_seen(message: Message) -> Seen:
    seen = Seen(finish=message.stop_reason)
    for block in message.content:
        if block.type == "text":
            seen.text += block.text
        elif block.type == "thinking":
            seen.thinking += block.thinking
        elif block.type == "tool_use":
            seen.calls.append((block.name, dict(block.input)))  # type: ignore[arg-type]
            seen.call_ids.append(block.id)
    usage = message.usage
    seen.cached_tokens = usage.cache_read_input_tokens or 0
    seen.input_tokens = usage.input_tokens + seen.cached_tokens + (usage.cache_creation_input_tokens or 0)
    seen.output_tokens = usage.output_tokens
    return seen


def anthropic_body(body: bytes) -> Seen:
    return _anthropic_seen(Message.model_validate_json(body))


def anthropic_events(stream: bytes) -> list[tuple[str, dict[str, object]]]:
    parser = SSEParser()
    out: list[tuple[str, dict[str, object]]] = []
    for event in parser.feed(stream) + parser.flush():
        data = orjson.loads(event.data)
        assert event.event == data["type"], "event name equals data.type"
        out.append((event.event, data))
    return out


def anthropic_stream(stream: bytes) -> Seen:
    snapshot = None
    bufs: dict[int, bytes] = {}
    names: list[str] = []
    for name, data in anthropic_events(stream):
        names.append(name)
        if name == "error":
            seen = Seen(error=data["error"])  # type: ignore[arg-type]
            return seen
        event = RAW_EVENT.validate_python(data) if name != "ping" else None
        if event is not None:
            snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=bufs)
    assert names[0] == "message_start" and names[1] == "ping", names[:2]
    assert names[-2:] == ["message_delta", "message_stop"], names[-2:]
    assert snapshot is not None
    return _anthropic_seen(Message.model_validate(snapshot.model_dump()))


# --- Gemini -------------------------------------------------------------------------------------------------


def _gemini_add(seen: Seen, response: gtypes.GenerateContentResponse) -> None:
    for candidate in response.candidates or []:
        if candidate.index not in (None, 0):
            continue
        for part in (candidate.content.parts or []) if candidate.content else []:
            if part.function_call is not None:
                seen.calls.append((part.function_call.name or "", dict(part.function_call.args or {})))
                seen.call_ids.append(part.function_call.id or "")
            elif part.text is not None:
                if part.thought:
                    seen.thinking += part.text
                else:
                    seen.text += part.text
        if candidate.finish_reason is not None:
            seen.finish = candidate.finish_reason.value
    usage = response.usage_metadata
    if usage is not None:
        seen.input_tokens = usage.prompt_token_count or 0
        seen.output_tokens = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
        seen.cached_tokens = usage.cached_content_token_count or 0


def gemini_body(body: bytes) -> Seen:
    seen = Seen()
    _gemini_add(seen, gtypes.GenerateContentResponse.model_validate_json(body))
    return seen


def gemini_chunks(stream: bytes) -> list[dict[str, object]]:
    reader = GeminiFrameReader()
    return [orjson.loads(text) for text in reader.feed(stream) + reader.flush()]


def gemini_stream(stream: bytes) -> Seen:
    seen = Seen()
    for data in gemini_chunks(stream):
        if "error" in data:
            seen.error = data["error"]  # type: ignore[assignment]
            return seen
        _gemini_add(seen, gtypes.GenerateContentResponse.model_validate(data))
    return seen


BODY_READERS = {"openai": openai_body, "anthropic": anthropic_body, "gemini": gemini_body}
STREAM_READERS = {"openai": openai_stream, "anthropic": anthropic_stream, "gemini": gemini_stream}


def read_body(fmt: Format, body: bytes) -> Seen:
    return BODY_READERS[fmt](body)


def read_stream(fmt: Format, stream: bytes) -> Seen:
    return STREAM_READERS[fmt](stream)
