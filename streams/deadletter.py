"""Dead-letter records: bad input, its reasons and where it came from, as one JSON object.

``{"v": 1, "kind": "deadletter", "source": "flyball.events[3]@1042", "ts_ms": …,
"errors": [{"reason": …, "where": …, "rows": […], "count": …}], "rejected_rows": 3,
"accepted_rows": 497, "raw_bytes": 51234, "raw_truncated": true, "raw_b64": "…"}``

``accepted_rows`` > 0 marks a partially bad frame whose valid rows were processed. The raw bytes
are kept (base64, at most ``max_raw_bytes``) so an operator can see what was sent.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Final

from schemas import jsoncodec
from schemas.errors import DecodeError

DEADLETTER_VERSION: Final = 1
DEFAULT_MAX_RAW_BYTES: Final = 4_096


def source_of(topic: str, partition: int, offset: int) -> str:
    """``topic[partition]@offset``: how logs and dead letters name a message."""
    return f"{topic}[{partition}]@{offset}"


def deadletter_record(
    source: str,
    errors: Sequence[DecodeError],
    raw: bytes | None,
    now_ms: int,
    accepted_rows: int = 0,
    max_raw_bytes: int = DEFAULT_MAX_RAW_BYTES,
) -> bytes:
    raw = raw or b""
    return jsoncodec.dumps(
        {
            "v": DEADLETTER_VERSION,
            "kind": "deadletter",
            "source": source,
            "ts_ms": now_ms,
            "errors": [
                {"reason": e.reason, "where": e.where, "rows": list(e.rows), "count": e.count}
                for e in errors
            ],
            "rejected_rows": sum(e.count for e in errors),
            "accepted_rows": accepted_rows,
            "raw_bytes": len(raw),
            "raw_truncated": len(raw) > max_raw_bytes,
            "raw_b64": base64.b64encode(raw[:max_raw_bytes]).decode("ascii"),
        }
    )
