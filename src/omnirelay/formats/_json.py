"""Typed reads from parsed JSON: each accessor checks the type and names the offending path in the 400 it
raises."""

from __future__ import annotations

import orjson

from omnirelay.formats.ir import InvalidRequest, JSONObject


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _bad(path: str, what: str) -> InvalidRequest:
    return InvalidRequest(f"'{path}' must be {what}", path)


def loads_object(body: bytes | str | JSONObject, path: str = "") -> JSONObject:
    if isinstance(body, dict):
        return body
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}", path or None) from None
    return as_obj(value, path or "body")


def as_obj(value: object, path: str) -> JSONObject:
    if not isinstance(value, dict):
        raise _bad(path, "an object")
    return value


def as_list(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise _bad(path, "an array")
    return value


def as_str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _bad(path, "a string")
    return value


def opt_obj(d: JSONObject, key: str, path: str = "") -> JSONObject | None:
    value = d.get(key)
    return None if value is None else as_obj(value, join(path, key))


def opt_list(d: JSONObject, key: str, path: str = "") -> list[object]:
    value = d.get(key)
    return [] if value is None else as_list(value, join(path, key))


def opt_str(d: JSONObject, key: str, path: str = "") -> str | None:
    value = d.get(key)
    return None if value is None else as_str(value, join(path, key))


def req_str(d: JSONObject, key: str, path: str = "") -> str:
    value = d.get(key)
    if value is None:
        raise InvalidRequest(f"'{join(path, key)}' is required", join(path, key))
    return as_str(value, join(path, key))


def opt_int(d: JSONObject, key: str, path: str = "") -> int | None:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _bad(join(path, key), "an integer")
    return value


def opt_float(d: JSONObject, key: str, path: str = "") -> float | None:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(join(path, key), "a number")
    return float(value)


def opt_bool(d: JSONObject, key: str, path: str = "") -> bool | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _bad(join(path, key), "a boolean")
    return value


def int_or_zero(d: JSONObject | None, key: str) -> int:
    """Lenient read for upstream usage numbers: anything but an int counts as 0."""
    if d is None:
        return 0
    value = d.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def obj_or_none(value: object) -> JSONObject | None:
    """Lenient read for upstream bodies, which we trust more than clients' and must not 400 on."""
    return value if isinstance(value, dict) else None


def list_or_empty(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def dumps(value: object) -> bytes:
    return orjson.dumps(value)


def dumps_str(value: object) -> str:
    return orjson.dumps(value).decode()


def parse_arguments(arguments: str, path: str) -> JSONObject:
    """Tool-call arguments as an object (Anthropic ``input``, Gemini ``args``); empty text means ``{}``."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"'{path}' is not valid JSON", path) from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{path}' must encode a JSON object", path)
    return value
