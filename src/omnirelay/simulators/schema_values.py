"""A deterministic value for a JSON schema: what a simulated model puts in tool arguments and JSON output.

``value_for_schema(schema, seed)`` returns a value that validates against ``schema``; the same schema and seed
always give the same value. It understands JSON Schema as vendors accept it (``type`` as a string or a list,
``enum``, ``const``, ``anyOf``/``oneOf``/``allOf``, local ``$ref`` into ``$defs``/``definitions``,
``properties``/``required``, ``items``/``prefixItems``, length, size and range bounds, common ``format``
values) and Gemini's OpenAPI subset (upper-case ``OBJECT``/``STRING``..., ``nullable``, ``propertyOrdering``).
``pattern`` is not honoured: a generator can't invert a regular expression, and no vendor example needs it.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from omnirelay.simulators.common import generated_words

_MAX_DEPTH = 6
"""Past this nesting only required properties, minimal arrays and ending branches are made: recursion ends."""
_HARD_DEPTH = 40

_FORMATS: dict[str, str] = {
    "date-time": "2025-01-15T10:30:00Z",
    "date": "2025-01-15",
    "time": "10:30:00",
    "email": "user@example.com",
    "uri": "https://example.com/item",
    "url": "https://example.com/item",
    "uuid": "123e4567-e89b-42d3-a456-426614174000",
    "ipv4": "192.0.2.10",
    "ipv6": "2001:db8::10",
    "hostname": "example.com",
    "duration": "PT1H",
}


def value_for_schema(schema: dict[str, Any], seed: str) -> object:
    """A value valid for ``schema``, chosen deterministically from ``seed``.

    Raises ``ValueError`` when the schema admits no finite value (a required, non-nullable self-reference)."""
    return _Generator(schema).value(schema, seed, 0)


def _json_text(schema: object) -> str:
    return json.dumps(schema, sort_keys=True, default=str)


def _number(seed: str) -> int:
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")


class _Generator:
    __slots__ = ("_root",)

    def __init__(self, root: dict[str, Any]) -> None:
        self._root = root

    def value(self, schema: dict[str, Any], seed: str, depth: int) -> object:
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            options = schema["enum"]
            return options[_number(seed) % len(options)]
        if "allOf" in schema:
            return self.value(self._merge_all_of(schema), seed, depth)
        for key in ("anyOf", "oneOf"):
            if schema.get(key):
                return self.value(self._branch(schema[key], depth), seed, depth)
        if depth > _HARD_DEPTH:
            raise ValueError("schema requires a value nested deeper than any finite one")
        kind = _kind(schema, deep=depth >= _MAX_DEPTH)
        if kind == "object":
            return self._object(schema, seed, depth)
        if kind == "array":
            return self._array(schema, seed, depth)
        if kind == "integer":
            return _integer(schema, seed)
        if kind == "number":
            return _float(schema, seed)
        if kind == "boolean":
            return _number(seed) % 2 == 0
        if kind == "null":
            return None
        return _string(schema, seed)

    def _branch(self, options: list[dict[str, Any]], depth: int) -> dict[str, Any]:
        """The first branch; deep down, the first one that ends (null, or no further reference).

        The first rather than a seeded pick: for oneOf that could land on two overlapping branches."""
        if depth >= _MAX_DEPTH:
            for option in options:
                if _kind(self._resolve(option), deep=True) == "null" or "$ref" not in _json_text(option):
                    return option
        return options[0]

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in schema and seen < 32:
            ref = schema["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#"):
                return {}
            target: Any = self._root
            for part in ref.lstrip("#").strip("/").split("/"):
                if not part:
                    continue
                target = target.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(target, dict) else {}
            schema = target if isinstance(target, dict) else {}
            seen += 1
        return schema

    def _merge_all_of(self, schema: dict[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        properties: dict[str, Any] = dict(merged.get("properties", {}))
        required: list[str] = list(merged.get("required", []))
        for part in schema["allOf"]:
            part = self._resolve(part)
            for key, value in part.items():
                if key == "properties":
                    properties.update(value)
                elif key == "required":
                    required.extend(name for name in value if name not in required)
                else:
                    merged.setdefault(key, value)
        if properties:
            merged["properties"] = properties
        if required:
            merged["required"] = required
        return merged

    def _object(self, schema: dict[str, Any], seed: str, depth: int) -> dict[str, object]:
        properties: dict[str, Any] = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        names = [name for name in properties if depth < _MAX_DEPTH or name in required]
        ordering = schema.get("propertyOrdering")
        if ordering:
            names.sort(key=lambda n: ordering.index(n) if n in ordering else len(ordering))
        result = {name: self.value(properties[name], f"{seed}/{name}", depth + 1) for name in names}
        extra = schema.get("additionalProperties")
        index = 0
        while len(result) < int(schema.get("minProperties", 0)):
            # Fill up to minProperties with extra keys, typed by additionalProperties when it is a schema.
            name = f"key{index}"
            index += 1
            if name not in result:
                sub = extra if isinstance(extra, dict) else {"type": "string"}
                result[name] = self.value(sub, f"{seed}/{name}", depth + 1)
        return result

    def _array(self, schema: dict[str, Any], seed: str, depth: int) -> list[object]:
        prefix: list[dict[str, Any]] = schema.get("prefixItems") or []
        items = schema.get("items")
        item_schema: dict[str, Any] = items if isinstance(items, dict) else {}
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        preferred = max(len(prefix), 0 if depth >= _MAX_DEPTH else 2)
        count = max(low, preferred if high is None else min(preferred, int(high)))
        if items is False:
            count = min(count, len(prefix)) if high is None else min(count, len(prefix), int(high))
        values: list[object] = []
        attempt = 0
        while len(values) < count and attempt < count * 8 + 8:
            index = len(values)
            sub = prefix[index] if index < len(prefix) else item_schema
            value = self.value(sub, f"{seed}[{index}.{attempt}]" if attempt else f"{seed}[{index}]", depth + 1)
            attempt += 1
            if schema.get("uniqueItems") and value in values:
                # An enum has few values to hit by chance: take the next unused one in order.
                unused = [v for v in self._resolve(sub).get("enum") or [] if v not in values]
                if not unused:
                    continue
                value = unused[0]
            values.append(value)
        return values


def _kind(schema: dict[str, Any], deep: bool = False) -> str:
    declared = schema.get("type")
    if deep and (schema.get("nullable") is True or (isinstance(declared, list) and "null" in declared)):
        return "null"
    if isinstance(declared, list):
        non_null = [t for t in declared if str(t).lower() != "null"]
        declared = non_null[0] if non_null else "null"
    if isinstance(declared, str) and declared.upper() != "TYPE_UNSPECIFIED":
        return declared.lower()
    # No type: infer from the keywords present, as validators do.
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return "number"
    return "string"


def _string(schema: dict[str, Any], seed: str) -> str:
    low = int(schema.get("minLength", 0))
    high = schema.get("maxLength")
    text = _FORMATS.get(str(schema.get("format", "")), "")
    if not text or len(text) < low or (high is not None and len(text) > int(high)):
        text = "".join(generated_words(seed, 3))
    while len(text) < low:
        text += " " + "".join(generated_words(f"{seed}+{len(text)}", 3))
    if high is not None:
        text = text[: int(high)]
    return text


def _bounds(schema: dict[str, Any]) -> tuple[float | None, float | None, bool, bool]:
    """Lower and upper bounds and whether each is exclusive (draft 4 booleans or draft 6 numbers)."""
    low, high = schema.get("minimum"), schema.get("maximum")
    low_ex = high_ex = False
    exclusive_low, exclusive_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(exclusive_low, bool):
        low_ex = exclusive_low
    elif isinstance(exclusive_low, int | float) and (low is None or exclusive_low >= low):
        low, low_ex = exclusive_low, True
    if isinstance(exclusive_high, bool):
        high_ex = exclusive_high
    elif isinstance(exclusive_high, int | float) and (high is None or exclusive_high <= high):
        high, high_ex = exclusive_high, True
    return low, high, low_ex, high_ex


def _integer(schema: dict[str, Any], seed: str) -> int:
    low, high, low_ex, high_ex = _bounds(schema)
    first = -1_000_000 if low is None else (math.floor(low) + 1 if low_ex else math.ceil(low))
    last = 1_000_000 if high is None else (math.ceil(high) - 1 if high_ex else math.floor(high))
    if low is None and high is None:
        first, last = 0, 100
    elif low is None:
        first = last - 100
    elif high is None:
        last = first + 100
    step = schema.get("multipleOf")
    if isinstance(step, int) and step > 0:
        multiples = range(math.ceil(first / step), math.floor(last / step) + 1)
        if len(multiples):
            return multiples[_number(seed) % len(multiples)] * step
    if last < first:
        return first
    return first + _number(seed) % (last - first + 1)


def _float(schema: dict[str, Any], seed: str) -> int | float:
    step = schema.get("multipleOf")
    if step is not None:
        # A whole multiple of the step is the only safe choice with binary floats.
        return (
            _integer({**schema, "multipleOf": None}, seed) if step in (1, 1.0) else _float_multiple(schema, step, seed)
        )
    low, high, low_ex, high_ex = _bounds(schema)
    lo = -1000.0 if low is None else float(low)
    hi = 1000.0 if high is None else float(high)
    if low is None and high is None:
        lo, hi = 0.0, 100.0
    elif low is None:
        lo = hi - 100.0
    elif high is None:
        hi = lo + 100.0
    fraction = (_number(seed) % 1000) / 1000
    value = round(lo + (hi - lo) * fraction, 2)
    if (value <= lo and low_ex) or value < lo:
        value = (lo + hi) / 2
    if (value >= hi and high_ex) or value > hi:
        value = (lo + hi) / 2
    return value


def _float_multiple(schema: dict[str, Any], step: float, seed: str) -> int | float:
    low, high, low_ex, high_ex = _bounds(schema)
    first = 0 if low is None else math.ceil(low / step)
    last = first + 100 if high is None else math.floor(high / step)
    if low is not None and low_ex and first * step <= low:
        first += 1
    if high is not None and high_ex and last * step >= high:
        last -= 1
    if low is None and high is not None:
        first = last - 100
    index = first if last < first else first + _number(seed) % (last - first + 1)
    # Rounding hides binary noise (3 * 0.1); validators dividing floats stay approximate for such steps.
    return round(index * step, 12)
