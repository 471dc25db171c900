"""The history sink: events, features, scores and directives from Kafka into the history store.

Delivery is at-least-once with idempotent outputs (the tables dedupe by deterministic keys). The
commit order, implemented exactly: **history flushed → offsets committed** (manual, synchronous
commits; ``enable.auto.commit=false``). A batch is flushed when it reaches ``max_rows`` rows or
``max_bytes`` bytes of messages, or ``flush_interval_ms`` after its first message.

When the store is unreachable or overloaded (a retriable ``HistoryError``), nothing is dropped:
the sink pauses every assigned partition, keeps its batch, retries with jittered exponential
backoff and resumes consumption once the batch is written. When the store refuses rows (a value a
column cannot hold, a block spanning too many partitions: ``retriable=False``), the batch is split
until the refused rows are isolated (``infra.isolate``); they go to the dead-letter topic with the
store's reason (delivered before the batch's offsets are committed), and every other row lands.
On a rebalance it flushes before giving partitions up; if that fails it discards the batch without
committing, so the partitions' next owner reads those messages again.

Bad messages are skipped, counted and logged as ``topic[partition]@offset: reason``; the stream
worker is the one that dead-letters them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from flyball.logbudget import LogBudget
from flyball.settings import Settings
from infra.isolate import insert_isolating, rejecter
from infra.records_codec import decode_feature, decode_score
from schemas.columns import EventColumns
from schemas.control import Heartbeat, Refused, open_control
from schemas.directive import Directive
from schemas.errors import DecodeError
from schemas.eventtime import bound_by_send_time
from schemas.frames import decode_message
from schemas.records import FeatureRecord, ScoreRecord

log = logging.getLogger(__name__)


class HistoryWriter(Protocol):
    """What the sink needs of a store (``HistoryStore`` is one)."""

    def insert_events(self, events: EventColumns) -> int: ...
    def insert_features(self, records: list[FeatureRecord]) -> int: ...
    def insert_scores(self, records: list[ScoreRecord]) -> int: ...
    def insert_directives(self, directives: list[Directive]) -> int: ...


@dataclass(frozen=True, slots=True)
class SinkConfig:
    group_id: str = "flyball-history"
    max_rows: int = 50_000
    max_bytes: int = 2_000_000
    flush_interval_ms: int = 500
    backoff_min_ms: int = 100
    backoff_max_ms: int = 5_000
    poll_batch: int = 2_000
    stop_timeout_ms: int = 3_000  # bounded final flush on stop()


@dataclass(frozen=True, slots=True)
class SinkStats:
    """An immutable snapshot of the sink's counters."""

    messages: int = 0
    events: int = 0  # event rows written
    features: int = 0
    scores: int = 0
    directives: int = 0
    heartbeats: int = 0
    bad_messages: int = 0  # messages with at least one error
    rejected_rows: int = 0  # rows of frames rejected by the codec
    refused_rows: int = 0  # decoded rows the store refused, dead-lettered (the rest landed)
    bounded_rows: int = 0  # completions after their message was sent: moved back to it
    flushes: int = 0
    commits: int = 0
    insert_failures: int = 0
    paused: bool = False
    last_error: str | None = None


@dataclass(slots=True)
class _Batch:
    """What was consumed and not yet written, and the offsets that writing it allows to commit."""

    events: list[EventColumns] = field(default_factory=list)
    features: list[FeatureRecord] = field(default_factory=list)
    scores: list[ScoreRecord] = field(default_factory=list)
    directives: list[Directive] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    rows: int = 0
    nbytes: int = 0
    first_ms: float = 0.0

    def pending(self) -> bool:
        return bool(self.offsets)

    def write(
        self, store: HistoryWriter, refused: Callable[[bytes, bytes], None]
    ) -> tuple[int, int, int, int]:
        """Insert everything, clearing each part once written (a retry resumes where it failed).
        Rows the store refuses are dead-lettered through ``refused`` and the rest land
        (``infra.isolate``); a retriable failure raises with the unwritten parts kept."""
        events = EventColumns.concat(self.events) if self.events else EventColumns.empty()
        n_ev = insert_isolating(store.insert_events, events, rejecter("events", refused))
        self.events = []
        n_ft = insert_isolating(store.insert_features, self.features, rejecter("features", refused))
        self.features = []
        n_sc = insert_isolating(store.insert_scores, self.scores, rejecter("scores", refused))
        self.scores = []
        n_di = insert_isolating(
            store.insert_directives, self.directives, rejecter("directives", refused)
        )
        self.directives = []
        return n_ev, n_ft, n_sc, n_di


class HistorySink:
    """Consumes the history topics in a thread; ``start()`` / ``stop()`` / ``stats()``."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        store: HistoryWriter,
        config: SinkConfig | None = None,
    ) -> None:
        self.settings = settings
        self._keyring = settings.keyring()
        self._sent_ms: int | None = None  # Kafka timestamp of the message being handled
        self.store = store
        self.config = config or SinkConfig()
        self.topics = {
            settings.topic_events: self._on_event,
            settings.topic_features: self._on_feature,
            settings.topic_scores: self._on_score,
            settings.topic_control: self._on_control,
        }
        self._conf: dict[str, Any] = {
            **settings.kafka_client_config(bootstrap),
            "group.id": self.config.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": settings.kafka_session_timeout_ms,
            "enable.partition.eof": False,
        }
        self._batch = _Batch()
        self._stats = SinkStats()
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None
        self._bootstrap = bootstrap
        self._deadletters: Producer | None = None
        self._refusals = 0  # dead letters produced since the last flush of the producer
        self._assigned: list[TopicPartition] = []
        self._backoff_ms = 0
        self._retry_at = 0.0
        self._log_budget = LogBudget(per_s=20)
        self.assigned = threading.Event()  # set once partitions have been assigned

    # --- lifecycle ---
    def start(self) -> HistorySink:
        if self._thread is not None:
            return self
        self._consumer = Consumer(self._conf)
        self._deadletters = Producer(
            {**self.settings.kafka_output_config(self._bootstrap), "log_level": 3}
        )
        self._consumer.subscribe(
            list(self.topics), on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        self._thread = threading.Thread(target=self._run, name="flyball-history-sink", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_ms: int | None = None) -> None:
        """Flush what was consumed (bounded), commit, leave the group."""
        self._stop.set()
        if self._thread is not None:
            limit = (timeout_ms or self.config.stop_timeout_ms + 4_000) / 1000
            self._thread.join(timeout=limit)
            if self._thread.is_alive():
                log.warning("history sink did not stop within %.1f s", limit)
            self._thread = None

    def stats(self) -> SinkStats:
        with self._stats_lock:
            return self._stats

    def _count(self, **changes: int | bool | str | None) -> None:
        """Add to the integer counters; set ``paused`` and ``last_error``."""
        with self._stats_lock:
            s = self._stats
            updates: dict[str, Any] = {}
            for k, v in changes.items():
                is_counter = isinstance(v, int) and not isinstance(v, bool)
                updates[k] = getattr(s, k) + v if is_counter else v
            self._stats = replace(s, **updates)

    # --- the loop (this thread owns the consumer) ---
    def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        cfg = self.config
        handlers = self.topics
        try:
            while not self._stop.is_set():
                msgs = consumer.consume(cfg.poll_batch, timeout=0.05)
                for msg in msgs:
                    self._accept(msg, handlers)
                if self._due():
                    self._flush(consumer)
            deadline = time.monotonic() + cfg.stop_timeout_ms / 1000
            while self._batch.pending() and time.monotonic() < deadline:
                if not self._flush(consumer):
                    time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            if self._batch.pending():
                log.warning("history sink stopped with an unwritten batch; it will be re-read")
        except Exception:
            log.exception("history sink failed")
        finally:
            try:
                consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("closing the history consumer: %s", exc)
            if self._deadletters is not None:
                self._deadletters.flush(2.0)
                self._deadletters = None  # destroyed now, not when the sink object is

    def _refused(self, key: bytes, value: bytes) -> None:
        """A row the store refused goes to the dead-letter topic (``infra.isolate``)."""
        assert self._deadletters is not None
        while True:
            try:
                self._deadletters.produce(self.settings.topic_deadletter, value, key)
                break
            except BufferError:
                self._deadletters.poll(0.05)
        self._refusals += 1
        self._count(refused_rows=1)

    def _accept(self, msg: Message, handlers: dict[str, Any]) -> None:
        err = msg.error()
        if err is not None:
            if not err.retriable() and err.fatal():
                raise KafkaException(err)
            log.debug("consumer: %s", err)
            return
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None
        b = self._batch
        if not b.offsets:
            b.first_ms = time.monotonic() * 1000
        raw = msg.value()
        b.offsets[(topic, partition)] = offset + 1
        if raw is None and topic == self.settings.topic_control:
            self._count(messages=1)  # a tombstone: an ended episode, compacted away
            return
        value = raw or b""
        self._sent_ms = msg.timestamp()[1]
        b.nbytes += len(value)
        errors: list[DecodeError] = handlers[topic](value)
        self._count(messages=1)
        if errors:
            self._count(bad_messages=1)
            if self._log_budget.take():
                where = f"{topic}[{partition}]@{offset}"
                log.warning(
                    "skipped bad input %s: %s", where, "; ".join(e.describe() for e in errors)
                )

    def _on_event(self, value: bytes) -> list[DecodeError]:
        result = decode_message(value)
        if len(result.events):
            # the bound the worker applies (schemas.eventtime): history sees what it saw
            events, moved = bound_by_send_time(result.events, self._sent_ms)
            self._batch.events.append(events)
            self._batch.rows += len(events)
            if moved:
                self._count(bounded_rows=moved)
        if result.errors:
            self._count(rejected_rows=result.rejected)
        return result.errors

    def _on_feature(self, value: bytes) -> list[DecodeError]:
        rec = decode_feature(value)
        if isinstance(rec, DecodeError):
            return [rec]
        self._batch.features.append(rec)
        self._batch.rows += 1
        return []

    def _on_score(self, value: bytes) -> list[DecodeError]:
        rec = decode_score(value)
        if isinstance(rec, DecodeError):
            return [rec]
        self._batch.scores.append(rec)
        self._batch.rows += 1
        return []

    def _on_control(self, value: bytes) -> list[DecodeError]:
        # history records what was published: with a keyring, only what gateways would accept
        ring = self._keyring
        msg = open_control(value, ring, allow_unsigned=True, verify=ring is not None)
        if isinstance(msg, Refused):
            return [msg.error or DecodeError(f"directive refused: {msg.reason}", "sig")]
        if isinstance(msg, Heartbeat):
            self._count(heartbeats=1)
            return []
        self._batch.directives.append(msg)
        self._batch.rows += 1
        return []

    def _due(self) -> bool:
        b, cfg = self._batch, self.config
        if not b.pending():
            return False
        if self._backoff_ms and time.monotonic() < self._retry_at:
            return False
        return (
            b.rows >= cfg.max_rows
            or b.nbytes >= cfg.max_bytes
            or time.monotonic() * 1000 - b.first_ms >= cfg.flush_interval_ms
            or bool(self._backoff_ms)
        )

    def _flush(self, consumer: Consumer) -> bool:
        """Write the batch, then commit its offsets. False (and paused) when the write failed."""
        b = self._batch
        try:
            n_ev, n_ft, n_sc, n_di = b.write(self.store, self._refused)
        except Exception as exc:  # the store unreachable: keep the batch, pause, retry later
            self._on_write_failure(consumer, exc)
            return False
        self._count(events=n_ev, features=n_ft, scores=n_sc, directives=n_di, flushes=1)
        if self._refusals and self._deadletters is not None:
            # the refused rows' dead letters are delivered before their offsets are committed
            if self._deadletters.flush(5.0):
                log.warning("dead letters of refused rows not yet delivered; will retry")
                return False
            self._refusals = 0
        offsets = [TopicPartition(t, p, o) for (t, p), o in b.offsets.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # History has the rows; a redelivery would only be deduped. Keep the offsets and
            # commit them with the next flush.
            log.warning("committing history offsets failed (will retry): %s", exc)
            self._count(last_error=f"commit: {exc}")
            return False
        self._batch = _Batch()
        self._count(commits=1)
        if self._backoff_ms:
            log.info("history store writable again; resuming consumption")
            self._backoff_ms = 0
            self._set_paused(consumer, False)
        return True

    def _on_write_failure(self, consumer: Consumer, exc: Exception) -> None:
        cfg = self.config
        first = not self._backoff_ms
        self._backoff_ms = min(cfg.backoff_max_ms, max(cfg.backoff_min_ms, self._backoff_ms * 2))
        # jittered ("equal jitter"): sinks that failed together do not retry in step
        self._retry_at = time.monotonic() + self._backoff_ms * random.uniform(0.5, 1.0) / 1000
        self._count(insert_failures=1, last_error=str(exc))
        if first:
            log.warning("history insert failed, pausing consumption and retrying: %s", exc)
            self._set_paused(consumer, True)
        else:
            log.debug("history insert failed again (retry in %d ms): %s", self._backoff_ms, exc)

    def _set_paused(self, consumer: Consumer, paused: bool) -> None:
        if self._assigned:
            try:
                (consumer.pause if paused else consumer.resume)(self._assigned)
            except KafkaException as exc:
                log.warning("pause/resume failed: %s", exc)
        self._count(paused=paused)

    # --- rebalance callbacks (run inside consume(), on this thread) ---
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned = list(partitions)
        if self._backoff_ms:  # still failing: keep the new assignment paused too
            self._set_paused(consumer, True)
        self.assigned.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._batch.pending() and not self._flush(consumer):
            log.warning("partitions revoked with an unwritten batch; the next owner re-reads it")
            self._batch = _Batch()
            self._backoff_ms = 0  # nothing left to retry: the next assignment starts unpaused
            self._count(paused=False)
        self._assigned = []
