"""A producer cannot move event time past the moment it sent the event.

An event is stamped by its gateway: ``ts_ms`` when the attempt started, ``latency_ms`` until it
completed, and the Kafka message that carries it gets a timestamp when the gateway's producer
sends it, after the completion, from the same clock. So an event cannot have completed later than
its message's timestamp (plus ``SEND_TOLERANCE_MS`` for the rounding of two reads of one clock).
One that claims to (``latency_ms = 86,400,000`` in a retry storm) would drag the watermark a day
ahead and turn every other event late; it is bounded here instead: its completion is moved back
to the message's timestamp (latency shortened; a start after it is moved too). Nothing is dropped,
the bounded rows are counted, and every reader of the events topic (the worker, its warm-up, the
history sink) applies the same bound, so history and a replay of it see what the governor saw.

The bound is the gateway's own clock, so it does not correct skew *between* gateways; the worker
gives each gateway its own event clock instead (``streams.governors``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

import numpy as np

from schemas.columns import EventColumns

SEND_TOLERANCE_MS: Final = 20  # ms rounding of two reads of one clock; << allowed lateness


def bound_by_send_time(
    events: EventColumns, sent_ms: int | None, tolerance_ms: int = SEND_TOLERANCE_MS
) -> tuple[EventColumns, int]:
    """``events`` with every completion at most ``sent_ms + tolerance_ms`` (``sent_ms``: the
    Kafka timestamp of the message that carried them; None or <= 0: unknown, no bound), and how
    many rows were moved."""
    if sent_ms is None or sent_ms <= 0 or len(events) == 0:
        return events, 0
    bound = sent_ms + tolerance_ms
    ts = events.ts_ms
    done = ts + events.latency_ms
    over = done > bound
    n = int(np.count_nonzero(over))
    if n == 0:
        return events, 0
    new_ts = np.minimum(ts, bound)
    new_latency = np.where(over, bound - new_ts, events.latency_ms)
    return replace(events, ts_ms=new_ts, latency_ms=new_latency), n
