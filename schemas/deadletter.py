"""Dead-letter records: bad input, its reasons and where it came from, as one JSON object.

``{"v": 2, "kind": "deadletter", "source": "flyball.events[3]@1042", "ts_ms": …,
"errors": [{"reason": …, "where": …, "rows": […], "count": …}], "rejected_rows": 3,
"accepted_rows": 497, "raw_bytes": 51234, "fields": ["cols", "gateway_id", "kind", "n", "v"]}``

``accepted_rows`` > 0 marks a partially bad frame whose valid rows were processed. Flyball never
holds request content, so the payload itself is not kept: only its size, the names of its
top-level fields when it is a JSON object (at most ``MAX_FIELDS``, each cut to ``MAX_NAME``
characters; what was sent, not what it said), and the reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from schemas import jsoncodec
from schemas.errors import DecodeError

DEADLETTER_VERSION: Final = 2
MAX_FIELDS: Final = 64
MAX_NAME: Final = 64


def source_of(topic: str, partition: int, offset: int) -> str:
    """``topic[partition]@offset``: how logs and dead letters name a message."""
    return f"{topic}[{partition}]@{offset}"


def field_names(raw: bytes) -> list[str]:
    """The top-level keys of ``raw`` when it is a JSON object (sorted, bounded), else []."""
    doc = jsoncodec.load_object(raw)
    if isinstance(doc, DecodeError):
        return []
    return sorted(str(k)[:MAX_NAME] for k in doc)[:MAX_FIELDS]


def deadletter_record(
    source: str,
    errors: Sequence[DecodeError],
    raw: bytes | None,
    now_ms: int,
    accepted_rows: int = 0,
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
            "fields": field_names(raw),
        }
    )
