"""Reading vendor payloads with errors that say which field is wrong. Shared by every adapter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ingest.errors import BadPayload


def required(obj: Mapping[str, Any], key: str, where: str) -> Any:
    """obj[key], or BadPayload("<where>.<key> is missing") when it is absent or null."""
    value = obj.get(key)
    if value is None:
        raise BadPayload(f"{where}.{key} is missing")
    return value


def integer(obj: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    """obj[key] as an integer that fits the log's 64 bits (default when absent, if given), or
    BadPayload saying what is wrong. A bigger one would fail the log's write, not the payload."""
    value = obj.get(key)
    if value is None:
        if default is not None:
            return default
        raise BadPayload(f"{where}.{key} is missing")
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadPayload(f"{where}.{key} must be an integer, got {value!r}")
    if not -(2**63) <= value < 2**63:
        raise BadPayload(f"{where}.{key} is out of range: {value}")
    return value


def parse_json(body: bytes) -> Any:
    """The body as JSON, or BadPayload saying where it breaks. orjson reads an integer beyond 64 bits
    as a float: the adapters' integer fields (amounts, times) refuse floats, so none passes as exact."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadPayload(f"body is not JSON: {exc}") from None

