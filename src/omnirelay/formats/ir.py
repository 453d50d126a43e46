"""The canonical form every wire format is translated through: requests, responses, stream events, errors.

A translation is ``<source>_request_to_ir`` then ``ir_to_<target>_request``; responses and stream events go
the other way. The IR keeps what at least two formats can express. What only one vendor can do (Anthropic
server tools, Gemini ``googleSearch``, OpenAI ``web_search_options``, ...) travels as a :class:`VendorExtra`
that only that vendor's encoder accepts; any other encoder raises :class:`UnsupportedField` naming the
client's field.

Errors raised by translators (the gateway maps them onto its own error type)::

    TranslationError
    ├── InvalidRequest      the client's body is malformed (400, names ``param``)
    ├── UnsupportedField    the target format cannot carry a field the client set (400, names ``field``)
    ├── NeedsFetch          the target needs inline bytes for media given by URL (the gateway fetches
    │                       the URLs, then calls again with ``fetched=``)
    └── UpstreamUnreadable  an upstream answer could not be read (502 ``upstream_error``, not the client's fault)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from omnirelay.formats.usage import Usage

Format = Literal["openai", "anthropic", "gemini"]
FORMATS: tuple[Format, ...] = ("openai", "anthropic", "gemini")
FORMAT_NAMES: dict[str, Format] = {name: name for name in FORMATS}

JSONObject = dict[str, object]


UPSTREAM_NAMES: dict[str, str] = {
    "openai": "an OpenAI upstream",
    "anthropic": "an Anthropic upstream",
    "gemini": "a Gemini upstream",
}

# --- errors


class TranslationError(Exception):
    """Base of every error a translator raises; all but UpstreamUnreadable mean HTTP 400 for the client."""


class InvalidRequest(TranslationError):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class UnsupportedField(TranslationError):
    """``field`` is named in the client's own vocabulary (``presence_penalty``, ``generationConfig.topK``)."""

    def __init__(self, field: str, target: Format, reason: str) -> None:
        super().__init__(f"'{field}' is not supported when this model is served by {UPSTREAM_NAMES[target]}: {reason}")
        self.field = field
        self.target = target
        self.reason = reason

    @property
    def message(self) -> str:
        return str(self)


class NeedsFetch(TranslationError):
    """The target only takes inline media; fetch ``urls`` and call again with ``fetched={url:
    FetchedMedia}``."""

    def __init__(self, urls: tuple[str, ...]) -> None:
        super().__init__(f"{len(urls)} media URL(s) must be fetched and inlined for this upstream")
        self.urls = urls


class UpstreamUnreadable(TranslationError):
    """Raised by response translation: the upstream's body is not what its format promises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class FetchedMedia:
    media_type: str
    data: str
    """Base64 of the bytes."""


# --- request content

MediaKind = Literal["image", "audio", "document", "video", "file"]


@dataclass(slots=True)
class TextPart:
    text: str


@dataclass(slots=True)
class MediaPart:
    """Exactly one of ``data`` (base64) or ``url`` is set. ``url`` may be ``https://``, ``gs://`` or a vendor
    file URI."""

    kind: MediaKind
    media_type: str | None
    data: str | None = None
    url: str | None = None
    filename: str | None = None


@dataclass(slots=True)
class ThinkingPart:
    """Reasoning the model showed. ``signature`` is only meaningful to the vendor named by ``origin``.

    A redacted block (Anthropic ``redacted_thinking``) has ``redacted=True`` and its opaque data in ``text``.
    A Gemini ``thoughtSignature`` on a non-thought part becomes a ThinkingPart with empty text placed just
    before it.
    """

    text: str
    signature: str | None = None
    origin: Format | None = None
    redacted: bool = False


@dataclass(slots=True)
class ToolCallPart:
    id: str
    name: str
    arguments: str
    """The arguments as JSON text (OpenAI's shape); vendors that want an object get it parsed."""


@dataclass(slots=True)
class ToolResultPart:
    call_id: str
    name: str | None
    content: list[TextPart | MediaPart]
    is_error: bool = False


@dataclass(slots=True)
class OpaquePart:
    """A content block only ``origin`` understands (Anthropic ``server_tool_use``, Gemini ``executableCode``,
    an OpenAI ``file_id``): carried raw, and any other encoder raises UnsupportedField naming ``field``."""

    origin: Format
    field: str
    value: JSONObject


Part = TextPart | MediaPart | ThinkingPart | ToolCallPart | ToolResultPart | OpaquePart
Role = Literal["user", "assistant"]
ROLES: dict[str, Role] = {"user": "user", "assistant": "assistant"}


@dataclass(slots=True)
class Message:
    """Tool results live in ``user`` messages (Anthropic's and Gemini's shape); OpenAI's ``tool`` role maps
    there."""

    role: Role
    parts: list[Part]


# --- request options


@dataclass(slots=True)
class ToolDef:
    name: str
    description: str | None = None
    parameters: JSONObject | None = None
    """A JSON Schema (full dialect; Gemini's OpenAPI subset is converted on the way in)."""
    strict: bool | None = None


ToolChoiceMode = Literal["auto", "none", "required", "tool"]
TOOL_CHOICE_MODES: dict[str, ToolChoiceMode] = {"auto": "auto", "none": "none", "required": "required"}


@dataclass(slots=True)
class ToolChoice:
    mode: ToolChoiceMode
    names: tuple[str, ...] = ()
    """``tool``: the one forced tool. ``auto``/``required``: an allow-list (empty = all tools)."""


@dataclass(slots=True)
class ResponseFormat:
    kind: Literal["json_object", "json_schema"]
    schema: JSONObject | None = None
    name: str | None = None
    strict: bool | None = None
    description: str | None = None


@dataclass(slots=True)
class Reasoning:
    """``enabled=False`` turns reasoning off. ``effort`` and ``budget_tokens`` may both be set; encoders
    prefer whichever their format speaks and derive the other from :data:`EFFORT_BUDGET`."""

    enabled: bool = True
    effort: str | None = None
    budget_tokens: int | None = None
    include_thoughts: bool | None = None


@dataclass(slots=True)
class VendorExtra:
    """Something only ``origin`` can do. ``field`` is the client's name for it, ``value`` the raw JSON."""

    origin: Format
    field: str
    value: object
    kind: Literal["field", "tool", "tool_choice"] = "field"
    """``field``: a top-level key; ``tool``: an entry of ``tools``; ``tool_choice``: the whole tool choice."""
    reason: str | None = None
    """Why no other vendor can take it; None means "only ``origin`` offers it"."""


@dataclass(slots=True)
class IRRequest:
    model: str
    messages: list[Message]
    source: Format
    system: list[str] = field(default_factory=list)
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    tools: list[ToolDef] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning: Reasoning | None = None
    n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    include_usage: bool = False
    """OpenAI ``stream_options.include_usage``: whether the client wants the usage chunk."""
    extras: list[VendorExtra] = field(default_factory=list)


# --- responses


class FinishReason(StrEnum):
    END_TURN = "end_turn"
    STOP_SEQUENCE = "stop_sequence"
    MAX_TOKENS = "max_tokens"
    CONTEXT_WINDOW = "context_window"
    TOOL_USE = "tool_use"
    CONTENT_FILTER = "content_filter"
    PAUSE_TURN = "pause_turn"
    TOOL_ERROR = "tool_error"
    """Gemini's malformed/unexpected function call family."""
    OTHER = "other"


@dataclass(slots=True)
class Choice:
    index: int
    parts: list[Part]
    finish: FinishReason | None = None
    stop_sequence: str | None = None
    refusal: str | None = None


@dataclass(slots=True)
class IRResponse:
    id: str
    model: str
    choices: list[Choice]
    usage: Usage | None = None
    created: int | None = None


# --- stream events


@dataclass(slots=True)
class StreamStart:
    id: str
    model: str
    usage: Usage | None = None
    """Input-side usage when the upstream gives it up front (Anthropic ``message_start``, Gemini chunks)."""


@dataclass(slots=True)
class TextDelta:
    text: str
    choice: int = 0


@dataclass(slots=True)
class ThinkingDelta:
    text: str
    choice: int = 0


@dataclass(slots=True)
class ThinkingSignature:
    """Closes the current thinking block (or stands for an empty one) with its signature."""

    signature: str
    origin: Format
    choice: int = 0


@dataclass(slots=True)
class RedactedThinking:
    data: str
    choice: int = 0


@dataclass(slots=True)
class ToolCallStart:
    index: int
    """Position of the call among this choice's calls (0, 1, ...)."""
    id: str
    name: str
    choice: int = 0


@dataclass(slots=True)
class ToolCallDelta:
    index: int
    arguments: str
    choice: int = 0


@dataclass(slots=True)
class MediaOutput:
    """A whole generated image (Gemini image models' ``inlineData``), sent as one event."""

    part: MediaPart
    choice: int = 0


@dataclass(slots=True)
class UsageUpdate:
    usage: Usage
    """Cumulative: the latest one replaces earlier ones."""


@dataclass(slots=True)
class Finish:
    reason: FinishReason
    choice: int = 0
    stop_sequence: str | None = None


@dataclass(slots=True)
class StreamError:
    message: str
    code: str = "upstream_error"
    """One of the gateway's error codes (``overloaded``, ``rate_limited``, ... see errors.CODE_STATUS)."""
    status: int = 502


@dataclass(slots=True)
class StreamEnd:
    """The upstream ended. ``complete=False``: it was cut before its final event."""

    complete: bool = True


StreamEvent = (
    StreamStart
    | TextDelta
    | ThinkingDelta
    | ThinkingSignature
    | RedactedThinking
    | ToolCallStart
    | ToolCallDelta
    | MediaOutput
    | UsageUpdate
    | Finish
    | StreamError
    | StreamEnd
)


# --- shared tables

EFFORT_BUDGET: dict[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
    "max": 65536,
}
"""OpenAI ``reasoning_effort`` / Anthropic ``output_config.effort`` / Gemini ``thinkingLevel`` ⇄ a thinking
budget in tokens (Anthropic ``thinking.budget_tokens``, Gemini ``thinkingBudget``). Anthropic's minimum budget
is 1024."""


def effort_to_budget(effort: str) -> int:
    return EFFORT_BUDGET.get(effort, EFFORT_BUDGET["medium"])


def budget_to_effort(budget: int) -> str:
    """The table's effort whose budget is the smallest one ≥ ``budget`` (exact for table values)."""
    for effort, limit in EFFORT_BUDGET.items():
        if budget <= limit:
            return effort
    return "max"


def reasoning_budget(reasoning: Reasoning) -> int:
    if reasoning.budget_tokens is not None and reasoning.budget_tokens > 0:
        return reasoning.budget_tokens
    return effort_to_budget(reasoning.effort or "medium")


def reasoning_effort(reasoning: Reasoning) -> str | None:
    if reasoning.effort is not None:
        return reasoning.effort
    if reasoning.budget_tokens is not None and reasoning.budget_tokens > 0:
        return budget_to_effort(reasoning.budget_tokens)
    return None


FIELD_NAMES: dict[str, dict[Format, str]] = {
    "n": {"openai": "n", "gemini": "generationConfig.candidateCount"},
    "presence_penalty": {"openai": "presence_penalty", "gemini": "generationConfig.presencePenalty"},
    "frequency_penalty": {"openai": "frequency_penalty", "gemini": "generationConfig.frequencyPenalty"},
    "seed": {"openai": "seed", "gemini": "generationConfig.seed"},
    "logprobs": {"openai": "logprobs", "gemini": "generationConfig.responseLogprobs"},
    "top_logprobs": {"openai": "top_logprobs", "gemini": "generationConfig.logprobs"},
    "top_k": {"anthropic": "top_k", "gemini": "generationConfig.topK"},
    "parallel_tool_calls": {
        "openai": "parallel_tool_calls",
        "anthropic": "tool_choice.disable_parallel_tool_use",
    },
    "response_format": {
        "openai": "response_format",
        "anthropic": "output_config.format",
        "gemini": "generationConfig.responseSchema",
    },
    "reasoning": {
        "openai": "reasoning_effort",
        "anthropic": "thinking",
        "gemini": "generationConfig.thinkingConfig",
    },
    "audio": {"openai": "input_audio", "anthropic": "content", "gemini": "inlineData"},
    "video": {"openai": "content", "anthropic": "content", "gemini": "inlineData"},
    "document": {"openai": "file", "anthropic": "document", "gemini": "inlineData"},
    "file": {"openai": "file.file_id", "anthropic": "document", "gemini": "fileData"},
    "image": {"openai": "image_url", "anthropic": "image", "gemini": "fileData"},
    "tool_result_media": {
        "openai": "content",
        "anthropic": "tool_result.content",
        "gemini": "functionResponse.parts",
    },
}
"""IR feature → the client's name for it, so an :class:`UnsupportedField` speaks the client's vocabulary."""


def unsupported(request: IRRequest, feature: str, target: Format, reason: str) -> UnsupportedField:
    name = FIELD_NAMES.get(feature, {}).get(request.source, feature)
    return UnsupportedField(name, target, reason)


def untranslatable(param: str, what: str) -> InvalidRequest:
    """Raised while reading a client body: something valid for its vendor that no other format can take."""
    return InvalidRequest(f"{what} at '{param}' cannot be translated to another vendor's format", param)


def check_opaque(part: OpaquePart, target: Format) -> JSONObject:
    if part.origin != target:
        raise UnsupportedField(part.field, target, f"a {part.origin}-only content block")
    return part.value


def extra_tools(extras: list[VendorExtra]) -> list[JSONObject]:
    return [e.value for e in extras if e.kind == "tool" and isinstance(e.value, dict)]


def check_extras(request: IRRequest, target: Format) -> list[VendorExtra]:
    """The extras ``target`` can take (its own); raise for the first one it cannot."""
    own: list[VendorExtra] = []
    for extra in request.extras:
        if extra.origin != target:
            raise UnsupportedField(
                extra.field, target, extra.reason or f"only {UPSTREAM_NAMES[extra.origin]} offers it"
            )
        own.append(extra)
    return own


# --- signatures

SIGNATURE_TAG = "omr1"
"""A signature shown to a client of another format is tagged ``omr1.<origin>.<raw>`` so that when the client
sends it back we know which vendor it belongs to (and hand it back only to that vendor)."""


def tag_signature(signature: str, origin: Format, client: Format) -> str:
    return signature if origin == client else f"{SIGNATURE_TAG}.{origin}.{signature}"


def untag_signature(value: str, client: Format) -> tuple[str, Format]:
    if value.startswith(SIGNATURE_TAG + "."):
        _, origin, raw = value.split(".", 2)
        known = FORMAT_NAMES.get(origin)
        if known is not None:
            return raw, known
    return value, client


# --- tool ids

SYNTHETIC_ID_PREFIX = "call_omr_"
"""Ids the gateway invented for Gemini function calls that came without one; never sent back to Gemini."""


def synthetic_call_id(scope: str, position: int) -> str:
    return f"{SYNTHETIC_ID_PREFIX}{scope}_{position}"


def resolve_tool_names(messages: list[Message]) -> None:
    """Fill ``ToolResultPart.name`` from the earlier call with the same id (OpenAI and Anthropic results omit
    it)."""
    names: dict[str, str] = {}
    for message in messages:
        for part in message.parts:
            if isinstance(part, ToolCallPart):
                names[part.id] = part.name
            elif isinstance(part, ToolResultPart) and part.name is None:
                part.name = names.get(part.call_id)
