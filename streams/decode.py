"""A batch of events-topic messages -> one ``EventColumns`` per partition, plus dead letters.

Per message: one ``decode_message`` call (orjson, then vectorised validation into numpy columns).
Per partition: one ``EventColumns.concat``. Nothing here loops over events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas.columns import EventColumns
from schemas.deadletter import deadletter_record, source_of
from schemas.eventtime import bound_by_send_time
from schemas.frames import decode_message


@dataclass(slots=True)
class DecodedBatch:
    """Valid rows by partition, and the dead-letter records (key, value) for the rest."""

    events: dict[int, EventColumns] = field(default_factory=dict)
    deadletters: list[tuple[bytes, bytes]] = field(default_factory=list)
    bad_messages: int = 0
    rejected_rows: int = 0
    rows: int = 0
    bounded_rows: int = 0  # completions after their message was sent (schemas.eventtime)


def decode_batch(
    topic: str,
    messages: Iterable[tuple[int, int, bytes | None, int | None]],
    now_ms: int,
) -> DecodedBatch:
    """Decode ``(partition, offset, value, kafka timestamp ms)`` messages of ``topic``."""
    parts: dict[int, list[EventColumns]] = {}
    out = DecodedBatch()
    for partition, offset, value, sent_ms in messages:
        result = decode_message(value if value is not None else b"")
        n = len(result.events)
        if n:
            events, moved = bound_by_send_time(result.events, sent_ms)
            parts.setdefault(partition, []).append(events)
            out.rows += n
            out.bounded_rows += moved
        if result.errors:
            source = source_of(topic, partition, offset)
            out.bad_messages += 1
            out.rejected_rows += result.rejected
            out.deadletters.append(
                (
                    source.encode(),
                    deadletter_record(source, result.errors, value, now_ms, n),
                )
            )
    out.events = {p: EventColumns.concat(batches) for p, batches in parts.items()}
    return out
