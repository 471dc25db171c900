"""The one place orjson is called: compact bytes out, bytes/str in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from schemas.errors import DecodeError

JSONDecodeError = orjson.JSONDecodeError

_OPTS = orjson.OPT_SERIALIZE_NUMPY


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=_OPTS)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    return orjson.loads(data)


def load_object(data: bytes | bytearray | memoryview | str) -> dict[str, Any] | DecodeError:
    """Parse a message that must be a JSON object; what else it is becomes a ``DecodeError``."""
    from schemas.errors import DecodeError

    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return DecodeError(f"not JSON: {exc}")
    if not isinstance(doc, dict):
        return DecodeError(f"expected a JSON object, got {type(doc).__name__}")
    return doc
