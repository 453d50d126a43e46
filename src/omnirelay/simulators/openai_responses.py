"""The fake OpenAI ``POST /v1/responses``: the Responses API over the chat simulator's machinery.

The request is read the way the gateway reads it for other vendors (``formats.openai_responses``: input items,
function tools, ``text.format``), so replies come from the same deterministic content as chat: the same prompt
gives the same words, tool calls with schema-valid arguments, JSON for a JSON schema, an echo of tool results.
Answers are ``response`` objects; streams follow wire-examples O8 (``event:`` + ``data:`` with ``type`` and
``sequence_number``, no ``[DONE]``). Responses are kept in memory (the last :data:`STORED` of them) so
``previous_response_id`` continues a conversation as on OpenAI's servers. Faults and knobs are the chat
simulator's; the in-stream ``error`` fault sends the Responses ``error`` event.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import orjson
from starlette.responses import Response

from omnirelay.formats.ir import InvalidRequest as TranslationInvalid
from omnirelay.formats.openai_responses import responses_to_chat_request
from omnirelay.formats.sse import encode_event
from omnirelay.simulators.common import SimKnobs
from omnirelay.simulators.openai_content import (
    InvalidRequest,
    JSONObject,
    Piece,
    argument_fragments,
    chat_prompt,
    count_tokens,
    cut_reply,
    int_param,
    reply_pieces,
    require,
    tool_arguments,
    tools_to_call,
)

if TYPE_CHECKING:
    from omnirelay.simulators.openai import _Call, _OpenAISimulator

STORED = 256
"""Responses remembered for ``previous_response_id``."""
Frame = tuple[bytes, bool]


class ResponsesEndpoint:
    def __init__(self, sim: _OpenAISimulator) -> None:
        self.sim = sim
        self._stored: OrderedDict[str, list[JSONObject]] = OrderedDict()
        """Response id → the chat messages of the conversation up to and including its answer."""

    def _hex_id(self, prefix: str) -> str:
        return prefix + self.sim._rng.randbytes(25).hex()

    def _chat_body(self, body: JSONObject) -> JSONObject:
        previous = body.get("previous_response_id")
        plain = {k: v for k, v in body.items() if k not in ("previous_response_id", "background")}
        for i, tool in enumerate(plain.get("tools") or ()):
            if isinstance(tool, dict) and tool.get("type") != "function":
                raise InvalidRequest(
                    f"The simulator does not run the built-in tool '{tool.get('type')}'.", f"tools[{i}].type"
                )
        try:
            chat = responses_to_chat_request(plain)
        except TranslationInvalid as exc:
            raise InvalidRequest(exc.message, exc.param) from None
        if previous is not None:
            history = self._stored.get(str(previous))
            if history is None:
                raise InvalidRequest(
                    f"Previous response with id '{previous}' not found.",
                    "previous_response_id",
                    "previous_response_not_found",
                )
            chat["messages"] = [*history, *chat["messages"]]  # type: ignore[misc]
        return chat

    async def handle(self, call: _Call) -> Response:
        require(call.body, "model", "input")
        body = call.body
        if body.get("background") is True and body.get("stream") is not True:
            raise InvalidRequest("The simulator does not run background responses.", "background")
        chat = self._chat_body(body)
        prompt = chat_prompt(chat["messages"], chat.get("tools"))
        knobs = self.sim.state.knobs_for(call.request, prompt.text)
        early = await self.sim._prelude(call, knobs)
        if early is not None:
            return early
        limit = int_param(body, "max_output_tokens", 0, 16, 1 << 30)
        rid = self._hex_id("resp_")
        output: list[JSONObject] = []
        tools = tools_to_call(chat, prompt, knobs)
        produced = 0
        finish = "stop"
        if tools:
            for function in tools:
                arguments = tool_arguments(function, prompt.seed)
                produced += count_tokens(str(function.get("name"))) + count_tokens(arguments)
                output.append(
                    {
                        "id": self._hex_id("fc_"),
                        "type": "function_call",
                        "status": "completed",
                        "arguments": arguments,
                        "call_id": self.sim._id("call_", 24),
                        "name": function.get("name"),
                    }
                )
            pieces: list[Piece] = []
        else:
            cut, finish = cut_reply(chat, reply_pieces(chat, prompt, knobs, prompt.seed), limit)
            pieces = list(cut)
            produced = sum(n for _, n in pieces)
            text = "".join(t for t, _ in pieces)
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
            message = {"id": self._hex_id("msg_"), "type": "message", "status": "completed", "content": [part]}
            output.append({**message, "role": "assistant"})
        usage = None
        if not knobs.no_usage:
            usage = {
                "input_tokens": prompt.tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": produced,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt.tokens + produced,
            }
        status = "incomplete" if finish == "length" else "completed"
        final = _response(rid, body, status, output, usage)
        self._remember(rid, chat["messages"], output)  # type: ignore[arg-type]
        if call.stream:
            frames = _frames(final, pieces)
            if knobs.fault == "error":
                error = {"type": "error", "code": "server_error", "message": "The server had an error.", "param": None}
                error["sequence_number"] = knobs.fault_after
                frames = [*frames[: knobs.fault_after], (encode_event("error", orjson.dumps(error)), False)]
                knobs = SimKnobs(**{**_knob_values(knobs), "fault": None})
            headers = self.sim.headers(call)
            from omnirelay.simulators.openai import _FrameStream  # that module registers this one

            return _FrameStream(frames, knobs, headers, "text/event-stream; charset=utf-8", call.recorded)
        if knobs.tokens_per_second > 0:  # a non-stream answer takes as long as the stream would
            await asyncio.sleep(knobs.ttft_ms / 1000 + produced / knobs.tokens_per_second)
        return self.sim._json(call, knobs, final)

    def _remember(self, rid: str, messages: list[JSONObject], output: list[JSONObject]) -> None:
        answer: JSONObject = {"role": "assistant", "content": None}
        calls = [
            {"id": o["call_id"], "type": "function", "function": {"name": o["name"], "arguments": o["arguments"]}}
            for o in output
            if o["type"] == "function_call"
        ]
        if calls:
            answer["tool_calls"] = calls
        else:
            content = output[0]["content"]
            answer["content"] = content[0]["text"]  # type: ignore[index]
        self._stored[rid] = [*messages, answer]
        while len(self._stored) > STORED:
            self._stored.popitem(last=False)


def _knob_values(knobs: SimKnobs) -> dict[str, Any]:
    return {name: getattr(knobs, name) for name in knobs.__dataclass_fields__}


def _response(
    rid: str, body: JSONObject, status: str, output: list[JSONObject], usage: JSONObject | None
) -> JSONObject:
    text = body.get("text") if isinstance(body.get("text"), dict) else {}
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    response: JSONObject = {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},  # type: ignore[union-attr]
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": text.get("format") or {"type": "text"}, "verbosity": "medium"},  # type: ignore[union-attr]
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": usage,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }
    return response


def _frames(final: JSONObject, pieces: list[Piece]) -> list[Frame]:
    """The event sequence of O8 for ``final``; text deltas one per piece, arguments in fragments."""
    events: list[tuple[JSONObject, bool]] = []

    def add(kind: str, paced: bool = False, **fields: Any) -> None:
        events.append(({"type": kind, **fields}, paced))

    opening = {**final, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    add("response.created", response=opening)
    add("response.in_progress", response=opening)
    output: list[JSONObject] = final["output"]  # type: ignore[assignment]
    for index, item in enumerate(output):
        item_id = item["id"]
        if item["type"] == "function_call":
            add(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            for fragment in argument_fragments(str(item["arguments"])):
                add("response.function_call_arguments.delta", True, item_id=item_id, output_index=index, delta=fragment)
            add(
                "response.function_call_arguments.done",
                item_id=item_id,
                output_index=index,
                name=item["name"],
                arguments=item["arguments"],
            )
        else:
            part = item["content"][0]  # type: ignore[index]
            add("response.output_item.added", output_index=index, item={**item, "status": "in_progress", "content": []})
            empty = {**part, "text": ""}
            add("response.content_part.added", item_id=item_id, output_index=index, content_index=0, part=empty)
            for text, _ in pieces:
                where = {"item_id": item_id, "output_index": index, "content_index": 0}
                add("response.output_text.delta", True, **where, delta=text, logprobs=[])
            where = {"item_id": item_id, "output_index": index, "content_index": 0}
            add("response.output_text.done", **where, text=part["text"], logprobs=[])
            add("response.content_part.done", **where, part=part)
        add("response.output_item.done", output_index=index, item=item)
    terminal = "response.completed" if final["status"] == "completed" else "response.incomplete"
    add(terminal, response=final)
    frames: list[Frame] = []
    for seq, (payload, paced) in enumerate(events):
        payload["sequence_number"] = seq
        frames.append((encode_event(str(payload["type"]), orjson.dumps(payload)), paced))
    return frames
