"""Python values <-> Convex's JSON encoding of values.

Convex has two numeric types: float64 (``v.number()``) and int64 (``v.int64()``). A plain
Python ``int`` or ``float`` travels as a JSON number (float64), as the official Python
client does; an ``Int64`` (an ``int`` subclass) travels as ``{"$integer": <base64 of 8
little-endian bytes>}`` so that values read from a deployment round-trip exactly. Bytes
travel as ``{"$bytes": base64}`` and non-finite floats (and -0.0) as ``{"$float": base64}``.
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any, Mapping

__all__ = ["Int64", "from_convex_json", "to_convex_json"]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class Int64(int):
    """A Convex int64 (``v.int64()`` / bigint). Behaves as an ``int`` everywhere else."""

    def __new__(cls, value: int) -> "Int64":
        number = int(value)
        if not _INT64_MIN <= number <= _INT64_MAX:
            raise ValueError(f"{number} does not fit in a Convex int64")
        return super().__new__(cls, number)

    def __repr__(self) -> str:
        return f"Int64({int(self)})"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def to_convex_json(value: Any) -> Any:
    """Encode a Python value for a Convex function argument (``format: "json"`` requests
    parse arguments in this encoding). Raises ``ValueError`` for values Convex cannot hold."""

    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Int64):
        return {"$integer": _b64(struct.pack("<q", int(value)))}
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and not (value == 0.0 and math.copysign(1.0, value) < 0):
            return value
        return {"$float": _b64(struct.pack("<d", value))}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": _b64(bytes(value))}
    if isinstance(value, (list, tuple)):
        return [to_convex_json(item) for item in value]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"Convex object keys must be strings, got {type(key).__name__}")
            if key.startswith("$"):
                raise ValueError(f"Convex object key {key!r} starts with '$', which is reserved")
            out[key] = to_convex_json(item)
        return out
    raise ValueError(f"{type(value).__name__} is not a Convex value")


def _decode_special(tag: str, payload: Any) -> Any:
    if not isinstance(payload, str):
        raise ValueError(f"malformed Convex JSON: {tag} must hold a base64 string")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"malformed Convex JSON: {tag} is not base64") from exc
    if tag == "$bytes":
        return raw
    if len(raw) != 8:
        raise ValueError(f"malformed Convex JSON: {tag} must encode 8 bytes")
    if tag == "$integer":
        return Int64(struct.unpack("<q", raw)[0])
    return struct.unpack("<d", raw)[0]


def from_convex_json(value: Any) -> Any:
    """Decode a value a deployment returned. Plain JSON passes through unchanged (the
    ``json`` response format already renders int64 as a decimal string), so this accepts
    both the clean and the encoded forms."""

    if isinstance(value, list):
        return [from_convex_json(item) for item in value]
    if isinstance(value, dict):
        if len(value) == 1:
            (key, payload), = value.items()
            if key in ("$integer", "$bytes", "$float"):
                return _decode_special(key, payload)
        return {key: from_convex_json(item) for key, item in value.items()}
    return value
