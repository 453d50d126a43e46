"""Gemini's OpenAPI-subset ``Schema`` (``parameters``, ``responseSchema``) → JSON Schema.

Gemini clients may describe tools and structured output in Google's dialect: upper-case ``type`` names,
``nullable``, int64 bounds as strings, ``propertyOrdering``. The other vendors take JSON Schema, and so does
Gemini itself through ``parametersJsonSchema``/``responseJsonSchema``, which is what the gateway sends it.
"""

from __future__ import annotations

from omnirelay.formats.ir import JSONObject

NESTED_ONE: frozenset[str] = frozenset({"items", "additionalProperties", "not"})
NESTED_LIST: frozenset[str] = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
INTEGER_KEYS: frozenset[str] = frozenset(
    {"minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"}
)
DROPPED_KEYS: frozenset[str] = frozenset({"propertyOrdering", "nullable"})
"""``propertyOrdering`` only orders Gemini's own output; ``nullable`` is folded into ``type``."""
SNAKE_KEYS: dict[str, str] = {
    "any_of": "anyOf",
    "min_items": "minItems",
    "max_items": "maxItems",
    "min_length": "minLength",
    "max_length": "maxLength",
    "min_properties": "minProperties",
    "max_properties": "maxProperties",
    "property_ordering": "propertyOrdering",
}


def gemini_schema_to_json_schema(schema: JSONObject) -> JSONObject:
    out: JSONObject = {}
    for raw_key, value in schema.items():
        key = SNAKE_KEYS.get(raw_key, raw_key)
        if key in DROPPED_KEYS:
            continue
        if key == "type" and isinstance(value, str):
            if value.upper() != "TYPE_UNSPECIFIED":
                out["type"] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {
                name: gemini_schema_to_json_schema(sub) if isinstance(sub, dict) else sub for name, sub in value.items()
            }
        elif key in NESTED_ONE and isinstance(value, dict):
            out[key] = gemini_schema_to_json_schema(value)
        elif key in NESTED_LIST and isinstance(value, list):
            out[key] = [gemini_schema_to_json_schema(v) if isinstance(v, dict) else v for v in value]
        elif key in INTEGER_KEYS and isinstance(value, str) and value.isdigit():
            out[key] = int(value)
        elif key == "example":
            out["examples"] = [value]
        else:
            out[key] = value
    if schema.get("nullable") is True:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif "anyOf" in out and isinstance(out["anyOf"], list):
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    return out
