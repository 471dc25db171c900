"""Per-batch timing records for benchmarks (``FLYBALL_WORKER_TRACE=<path>``, off by default).

One JSON line per processed batch, per idle advance that produced output and per checkpoint, with
wall-clock epoch ms (the clock event times and Kafka timestamps are written in), so a benchmark can
split an onset-to-directive latency into its parts: produce → worker (``recv_ms`` − Kafka
timestamps), decode, govern, publish, and the event time the core had seen when it decided
(``ev_end_max``: the newest ``ts_ms + latency_ms``, the core's completion time).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import IO, Any

from faust.types import EventT

from schemas import jsoncodec
from streams.decode import DecodedBatch
from streams.outputs import Outputs

TRACE_ENV = "FLYBALL_WORKER_TRACE"


def _directives(outputs: Outputs) -> list[dict[str, Any]]:
    return [
        {
            "id": d.id,
            "detector": d.reason.detector,
            "endpoint": d.scope.endpoint,
            "action": d.action.type,
            "issued_ms": d.issued_ms,
            "score": d.reason.score,
        }
        for d in outputs.directives
    ]


class Trace:
    def __init__(self, path: str) -> None:
        self._f: IO[bytes] = open(path, "ab")  # noqa: SIM115 (closed by close())

    @classmethod
    def from_env(cls) -> Trace | None:
        path = os.environ.get(TRACE_ENV, "").strip()
        return cls(path) if path else None

    def _write(self, record: dict[str, Any]) -> None:
        if not self._f.closed:  # the agent may finish a batch after the worker closed the trace
            self._f.write(jsoncodec.dumps(record) + b"\n")
            self._f.flush()

    def batch(
        self,
        events: Sequence[EventT[bytes]],
        batch: DecodedBatch,
        outputs: Outputs,
        recv_ms: int,
        decoded_ms: int,
        governed_ms: int,
        directives_sent_ms: int,
        published_ms: int,
    ) -> None:
        kts = [round(ev.message.timestamp * 1000) for ev in events]
        ts_max = end_max = 0
        for cols in batch.events.values():
            if len(cols):
                ts_max = max(ts_max, int(cols.ts_ms.max()))
                end_max = max(end_max, int((cols.ts_ms + cols.latency_ms).max()))
        self._write(
            {
                "kind": "batch",
                "messages": len(events),
                "rows": batch.rows,
                "kafka_ts": kts,
                "ev_ts_max": ts_max,
                "ev_end_max": end_max,
                "recv_ms": recv_ms,
                "decoded_ms": decoded_ms,
                "governed_ms": governed_ms,
                "directives_sent_ms": directives_sent_ms if outputs.directives else None,
                "published_ms": published_ms,
                "directives": _directives(outputs),
            }
        )

    def idle(
        self, outputs: Outputs, now_ms: int, directives_sent_ms: int, published_ms: int
    ) -> None:
        self._write(
            {
                "kind": "idle",
                "recv_ms": now_ms,
                "directives_sent_ms": directives_sent_ms if outputs.directives else None,
                "published_ms": published_ms,
                "directives": _directives(outputs),
            }
        )

    def checkpoint(self, messages: int, started_mono_ms: float, done_mono_ms: float) -> None:
        self._write(
            {
                "kind": "checkpoint",
                "messages": messages,
                "ms": round(done_mono_ms - started_mono_ms, 2),
            }
        )

    def close(self) -> None:
        self._f.close()
