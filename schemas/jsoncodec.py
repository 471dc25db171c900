"""The one place orjson is called: compact bytes out, bytes/str in."""

from __future__ import annotations

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError

_OPTS = orjson.OPT_SERIALIZE_NUMPY
_CANON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=_OPTS)


def dumps_canonical(obj: Any) -> bytes:
    """Deterministic bytes (sorted keys): what signatures and ids are computed over."""
    return orjson.dumps(obj, option=_CANON)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    return orjson.loads(data)
