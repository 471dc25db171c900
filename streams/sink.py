"""The worker's own history sink (``sink=True``): rows batched, written through ``HistoryStore``.

Rows wait in a pending buffer until a checkpoint flushes them (see ``streams/README.md`` for the
commit order). ``full`` says the buffer reached its bound: the worker then checkpoints before it
takes more input, so a slow ClickHouse pauses consumption instead of growing memory or dropping.
An insert the store could not take (unreachable, overloaded: a retriable ``HistoryError``) is
retried with jittered backoff, forever, and nothing is dropped: the offsets of the rows are not
committed until the rows are written. Rows the store refuses (``retriable=False``) are isolated by
splitting the batch (``infra.isolate``) and dead-lettered with the store's reason through
``deadletter``; the rest land. Control never waits for history: directives are published before a
checkpoint flushes the sink. Replays are harmless: the history tables dedupe by
event id and by deterministic directive id (``infra/ddl.sql``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from flyball.errors import FlyballError
from infra.isolate import insert_isolating, rejecter
from infra.sink import HistoryWriter
from schemas.columns import EventColumns
from schemas.directive import Directive
from schemas.records import FeatureRecord, ScoreRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SinkConfig:
    max_pending_rows: int = 200_000
    flush_interval_ms: int = 1_000
    backoff_min_ms: int = 100
    backoff_max_ms: int = 5_000


class HistorySink:
    """Pending rows for the four history tables; ``flush()`` writes them (one thread, in order)."""

    def __init__(
        self,
        store: HistoryWriter,
        config: SinkConfig | None = None,
        deadletter: Callable[[bytes, bytes], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config or SinkConfig()
        self.deadletter = deadletter or (lambda key, value: None)
        self._events: list[EventColumns] = []
        self._features: list[FeatureRecord] = []
        self._scores: list[ScoreRecord] = []
        self._directives: list[Directive] = []
        self._rows = 0
        self._first_ms: float | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flyball-history")
        self.written_rows = 0
        self.failed_flushes = 0
        self.refused_rows = 0

    @property
    def pending_rows(self) -> int:
        return self._rows

    @property
    def full(self) -> bool:
        return self._rows >= self.config.max_pending_rows

    def due(self) -> bool:
        if self._first_ms is None:
            return False
        age_ms = time.monotonic() * 1000 - self._first_ms
        return self.full or age_ms >= self.config.flush_interval_ms

    def add(
        self,
        events: EventColumns | None,
        features: list[FeatureRecord],
        scores: list[ScoreRecord],
        directives: list[Directive],
    ) -> None:
        n = (len(events) if events is not None else 0) + len(features) + len(scores)
        n += len(directives)
        if n == 0:
            return
        if events is not None and len(events):
            self._events.append(events)
        self._features.extend(features)
        self._scores.extend(scores)
        self._directives.extend(directives)
        self._rows += n
        if self._first_ms is None:
            self._first_ms = time.monotonic() * 1000

    async def flush(self) -> int:
        """Write every row pending now; retry until written. Returns the rows written.

        The pending rows are detached first, so rows added while the write runs (the agent does
        not wait for a checkpoint started by the timer) belong to the next flush. If the flush
        ends without writing (cancelled at shutdown, or a non-retriable error), the detached rows
        are put back in front of the pending ones.
        """
        if self._rows == 0:
            return 0
        events, features, scores, directives = (
            self._events,
            self._features,
            self._scores,
            self._directives,
        )
        rows, first_ms = self._rows, self._first_ms
        self._events, self._features, self._scores, self._directives = [], [], [], []
        self._rows = 0
        self._first_ms = None
        loop = asyncio.get_running_loop()
        delay_ms = self.config.backoff_min_ms
        written = False
        try:
            batch = (EventColumns.concat(events), features, scores, directives)
            while True:
                try:
                    await loop.run_in_executor(self._pool, self._write, *batch)
                    written = True
                    break
                except FlyballError as exc:  # HistoryError: retriable; keep the rows, back off
                    self.failed_flushes += 1
                    log.warning("history insert failed (%s); retrying in %d ms", exc, delay_ms)
                    await asyncio.sleep(delay_ms * random.uniform(0.5, 1.0) / 1000)
                    delay_ms = min(delay_ms * 2, self.config.backoff_max_ms)
        finally:
            if not written:
                self._events[:0] = events
                self._features[:0] = features
                self._scores[:0] = scores
                self._directives[:0] = directives
                self._rows += rows
                self._first_ms = first_ms
        self.written_rows += rows
        return rows

    def _write(
        self,
        events: EventColumns,
        features: list[FeatureRecord],
        scores: list[ScoreRecord],
        directives: list[Directive],
    ) -> None:
        # Each insert is idempotent, so retrying the whole batch after a partial failure is safe.
        store, refused = self.store, self._refused
        insert_isolating(store.insert_events, events, rejecter("events", refused))
        insert_isolating(store.insert_features, features, rejecter("features", refused))
        insert_isolating(store.insert_scores, scores, rejecter("scores", refused))
        insert_isolating(store.insert_directives, directives, rejecter("directives", refused))

    def _refused(self, key: bytes, value: bytes) -> None:
        self.refused_rows += 1
        self.deadletter(key, value)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
