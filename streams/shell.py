"""The stream worker: Faust agent over frames -> one governor (a source per partition) -> topics
and history.

Per batch (``stream.take_events``): decode every message into numpy columns (``decode_batch``),
feed the governor one ``EventColumns`` per partition and advance it once, publish features /
scores / directives, queue history rows, and hold the batch's acks until the next checkpoint. A
checkpoint runs, in this order: **history sink flushed → producer flushed → messages acked**;
Faust's consumer commits acked offsets only (``broker_commit_interval``, and on rebalance/stop).
See ``streams/README.md``.

Two locks. The *processing* lock covers what touches the governor and the pending outputs (a
batch's decode → ingest → publish → queue, the timer's idle advance, and the rebuild after an
assignment, which the agent does on its first batch); it is never held across a flush. The
*checkpoint* lock serializes checkpoints; a checkpoint takes its snapshot (held messages, pending
history rows) synchronously, so it covers exactly the batches fully processed before it began,
and batches processed while it flushes wait for the next one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from faust.streams import Stream
from faust.types import TP, EventT, StreamT
from mode import BaseSignalT

from flyball.clock import wall_ms
from flyball.errors import ConfigError
from flyball.logbudget import LogBudget
from flyball.settings import Settings
from infra.sink import HistoryWriter
from schemas.columns import EventColumns
from streams.app import AppTuning, app_id, build_app
from streams.decode import DecodedBatch, decode_batch
from streams.errors import WarmupError
from streams.governors import (
    MAX_GATEWAY_SKEW_MS,
    MAX_GATEWAYS,
    GovernorLike,
    Timing,
    WorkerGovernor,
)
from streams.outputs import (
    Outputs,
    encode_directives,
    encode_features,
    encode_heartbeat,
    encode_scores,
)
from streams.producer import OutputProducer
from streams.sink import HistorySink, SinkConfig
from streams.trace import Trace
from streams.warmup import live_starts, replay_partitions

log = logging.getLogger(__name__)
_DEADLETTER_LOG = LogBudget(per_s=20)  # a flood of bad input must not flood the log
_EVENT_TIME_LOG = LogBudget(per_s=1)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """The shell's tuning. Times in ms."""

    take_max_messages: int = 256  # frames per batch (fewer, larger batches: less per-batch cost)
    take_within_ms: int = 50  # a partial batch is processed after this long
    tick_ms: int = 200  # idle watermarks and due checkpoints
    heartbeat_ms: int = 1_000
    idle_after_ms: int = 500
    live_skew_ms: int = 120_000
    max_gateway_skew_ms: int = MAX_GATEWAY_SKEW_MS  # a gateway further behind is not waited for
    max_gateways: int = MAX_GATEWAYS  # per partition told apart (each has its own event clock)
    warmup_timeout_ms: int = 30_000
    sink: SinkConfig = field(default_factory=SinkConfig)
    app: AppTuning = field(default_factory=AppTuning)


@dataclass(slots=True)
class WorkerStats:
    batches: int = 0
    messages: int = 0
    events: int = 0
    bad_messages: int = 0
    rejected_rows: int = 0
    refused_rows: int = 0  # decoded rows the history store refused (dead-lettered)
    bounded_rows: int = 0  # rows whose completion was after their message was sent (bounded)
    late_events: int = 0  # events the governor could not use: their window had closed
    log_resets: int = 0  # events logs found reset under the worker (governor rebuilt)
    features: int = 0
    scores: int = 0
    directives: int = 0
    heartbeats: int = 0
    warmups: int = 0
    warmup_events: int = 0
    warmup_failures: int = 0
    checkpoints: int = 0
    first_batch_mono: float = 0.0
    last_checkpoint_mono: float = 0.0


def mono_ms() -> float:
    return time.monotonic() * 1000


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class StreamWorker:
    """Builds the Faust app with its agent, timers and rebalance hooks."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        governor_factory: Callable[[], GovernorLike],
        timing: Timing,
        store: HistoryWriter | None = None,
        config: WorkerConfig | None = None,
        worker_name: str | None = None,
    ) -> None:
        self.settings = settings
        self.config = config or WorkerConfig()
        self.timing = timing
        self.worker_name = worker_name or default_worker_name()
        self.kafka_conf = settings.kafka_client_config(bootstrap)
        self.keyring = settings.keyring()
        if self.keyring is not None and self.keyring.signer is None:
            raise ConfigError("control keys: the keyring has no signing key ('sign')")
        if self.keyring is None and not settings.allow_unsigned:
            raise ConfigError(
                "no control keys: set control_keys (a keyring from `flyball keygen`) or "
                "signing_key, or allow_unsigned=true (gateways then refuse nothing)"
            )
        self.sink = (
            HistorySink(store, self.config.sink, deadletter=self._send_deadletter)
            if store is not None
            else None
        )
        self.governor_factory = governor_factory
        self.governor: WorkerGovernor | None = None  # built on the first batch of an assignment
        self.stats = WorkerStats()
        self.on_checkpoint: Callable[[StreamWorker], None] | None = None  # benchmarks, tests
        self.trace: Trace | None = Trace.from_env()  # benchmarks: per-batch timings
        self._held: list[EventT[bytes]] = []
        self._assigned: set[int] = set()
        self._lock: asyncio.Lock | None = None  # processing: governor, pending outputs, _held
        self._ckpt_lock: asyncio.Lock | None = None  # one checkpoint at a time
        self._ckpt_task: asyncio.Task[None] | None = None  # a checkpoint in the background
        self._ckpt_again = False  # another background checkpoint is wanted after the running one
        self._idle_due = False  # the timer found the agent busy: the agent advances idle ones
        self._idle_task: asyncio.Task[None] | None = None  # the timer's idle advance
        self._directives_sent_ms = 0  # wall ms the last directives were handed to the producer
        # all outputs (see streams/producer.py), acks=all and idempotent
        self.producer = OutputProducer(settings.kafka_output_config(bootstrap))
        self.app = build_app(settings, bootstrap, self.config.app)
        self.events_topic = self.app.topic(settings.topic_events)
        self.app.agent(self.events_topic, name="flyball.govern", concurrency=1)(self._govern)
        self.app.timer(self.config.heartbeat_ms / 1000, name="flyball.heartbeat")(self._heartbeat)
        self.app.timer(self.config.tick_ms / 1000, name="flyball.tick")(self._tick)
        self.app.on_partitions_assigned.connect(self._on_assigned)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.before_stop = self._on_stop

    # --- the agent ---
    async def _govern(self, stream: StreamT[bytes]) -> None:
        max_n = self.config.take_max_messages
        within_s = self.config.take_within_ms / 1000
        batches = cast(Stream[bytes], stream).take_events(max_n, within=within_s)
        async for events in batches:
            for ev in events:
                ev.message.incref()  # our hold: acked at the checkpoint, not after this body
            async with self._guard():
                await self._process(events)
                if self._idle_due:
                    await self._advance_idle()
            if self.sink is not None and self.sink.full:
                await self._checkpoint()  # backpressure: no more input until history caught up
            elif self.sink is None or self.sink.due():
                self._checkpoint_soon()

    async def _process(self, events: Sequence[EventT[bytes]]) -> None:
        """One batch: decode, govern, publish; then its rows queued and its messages held.

        The queueing and the hold happen together at the end (no await between them), so a
        checkpoint never holds a message whose outputs were not yet sent and queued.
        """
        st = self.stats
        if st.first_batch_mono == 0.0:
            st.first_batch_mono = time.monotonic()
        now_ms = wall_ms()
        topic = self.settings.topic_events
        first: dict[int, int] = {}  # partition -> its first offset in this batch
        for ev in events:
            m = ev.message
            first[m.partition] = min(m.offset, first.get(m.partition, m.offset))
        gov = self.governor
        reset = gov.reset_partitions(first, self._high_water) if gov is not None else []
        if reset:
            log.warning(
                "events partitions %s start again below the offsets already ingested and the "
                "log now ends there (the broker lost its log): rebuilding the governor", reset,
            )
            st.log_resets += 1
            dropped = self.producer.renew()
            if dropped:
                log.warning("dropped %d queued outputs of the lost log", dropped)
        if gov is None or reset or not gov.built_for(self._assigned | set(first)):
            gov = await self._warm_up(first)
        items = []
        next_offsets: dict[int, int] = {}  # partition -> its last new offset + 1
        for ev in events:
            m = ev.message
            if gov.is_new(m.partition, m.offset):  # else already ingested (redelivered)
                sent_ms = round(m.timestamp * 1000) if m.timestamp else None
                items.append((m.partition, m.offset, ev.value, sent_ms))
                next_offsets[m.partition] = max(m.offset + 1, next_offsets.get(m.partition, 0))
        # CPU work (decode, governor) runs off the event loop, so heartbeats, Kafka group
        # heartbeats and fetches stay on time while a large batch is computed.
        batch = await asyncio.to_thread(decode_batch, topic, items, now_ms)
        decoded_ms = wall_ms()
        outputs = await asyncio.to_thread(self._govern_batch, gov, batch, next_offsets)
        governed_ms = wall_ms()
        await self._publish(outputs, batch)
        if self.sink is not None:
            all_events = EventColumns.concat(list(batch.events.values()))
            self.sink.add(all_events, outputs.features, outputs.scores, outputs.directives)
        self._held.extend(events)
        if self.trace is not None:
            published = (governed_ms, self._directives_sent_ms, wall_ms())
            self.trace.batch(events, batch, outputs, now_ms, decoded_ms, *published)
        st.batches += 1
        st.messages += len(events)
        st.events += batch.rows
        st.bad_messages += batch.bad_messages
        st.rejected_rows += batch.rejected_rows
        st.bounded_rows += batch.bounded_rows
        st.late_events += outputs.late_events
        if (batch.bounded_rows or outputs.late_events) and _EVENT_TIME_LOG.take():
            log.warning(
                "event time: %d events completed after their message was sent (bounded to it), "
                "%d late (their window had closed; kept in history, not governed); totals %d, %d",
                batch.bounded_rows, outputs.late_events, st.bounded_rows, st.late_events,
            )

    def _govern_batch(
        self, gov: WorkerGovernor, batch: DecodedBatch, next_offsets: dict[int, int]
    ) -> Outputs:
        mono = mono_ms()
        for p, next_offset in next_offsets.items():
            gov.ingest(p, batch.events.get(p, EventColumns.empty()), next_offset, mono)
        outputs = Outputs()
        outputs.add(gov.advance(), self.keyring)
        return outputs

    async def _warm_up(self, first_offsets: dict[int, int]) -> WorkerGovernor:
        """A fresh governor for every assigned partition, fed the log's recent past (outputs
        discarded); ``first_offsets``: the first live offset of the partitions in this batch."""
        topic, conf = self.settings.topic_events, self.kafka_conf
        timeout_ms = self.config.warmup_timeout_ms
        partitions = self._assigned | set(first_offsets)

        def replay() -> tuple[WorkerGovernor, int]:
            starts = dict.fromkeys(partitions, 0)  # unknown: every live message counts as new
            try:
                group = app_id(self.settings)
                starts = live_starts(conf, group, topic, partitions, first_offsets, timeout_ms)
                log.info("%s: warm-up, live from offsets %s", topic, dict(sorted(starts.items())))
                wg, n = self._worker_governor(starts), 0
                for p, cols in replay_partitions(
                    conf, topic, starts, self.timing.warmup_ms, timeout_ms
                ):
                    wg.feed(p, cols, mono_ms())
                    wg.advance()  # outputs dropped: warm-up publishes nothing
                    n += len(cols)
                return wg, n
            except WarmupError as exc:
                self.stats.warmup_failures += 1
                log.warning("warm-up failed, going live with empty state: %s", exc)
                return self._worker_governor(starts), 0

        wg, replayed = await asyncio.to_thread(replay)
        self.stats.warmups += 1
        self.stats.warmup_events += replayed
        log.info("%s%s: warm-up replayed %d events", topic, sorted(partitions), replayed)
        self.governor = wg
        return wg

    def _worker_governor(self, next_offsets: dict[int, int]) -> WorkerGovernor:
        cfg = self.config
        return WorkerGovernor(
            self.governor_factory(),
            next_offsets,
            mono_ms(),
            cfg.max_gateway_skew_ms,
            cfg.max_gateways,
        )

    # --- outputs ---
    def _send_deadletter(self, key: bytes, value: bytes) -> None:
        """A row history refused (called from the sink's thread; librdkafka is thread-safe).
        Delivered by the checkpoint's producer flush, which follows the sink's."""
        self.stats.refused_rows += 1
        self.producer.send(self.settings.topic_deadletter, key, value)

    async def _publish(self, outputs: Outputs, batch: DecodedBatch | None = None) -> None:
        s = self.settings
        send = self.producer.send
        st = self.stats
        # directives first: they are what gateways wait for
        for key, value in encode_directives(outputs):
            send(s.topic_control, key, value)
        if outputs.directives:
            self._directives_sent_ms = wall_ms()
        for key, value in encode_features(outputs.features):
            send(s.topic_features, key, value)
        for key, value in encode_scores(outputs.scores):
            send(s.topic_scores, key, value)
        if batch is not None:
            for key, value in batch.deadletters:
                send(s.topic_deadletter, key, value)
            for key, _ in batch.deadletters:
                if _DEADLETTER_LOG.take():
                    log.warning("dead-lettered %s", key.decode())
        st.directives += len(outputs.directives)
        st.features += len(outputs.features)
        st.scores += len(outputs.scores)

    async def _checkpoint(self) -> None:
        """History flushed -> producer flushed -> held messages acked (then Faust commits).

        Covers the batches processed before it began (their messages are in ``_held`` and their
        rows pending in the sink, both taken here before the first await); batches processed
        while it flushes are held for the next checkpoint. On failure the messages stay held.
        """
        async with self._ckpt_guard():
            held, self._held = self._held, []
            started = mono_ms()
            try:
                if self.sink is not None:
                    await self.sink.flush()
                await self.producer.flush()
            except BaseException:
                self._held[:0] = held
                raise
            for ev in held:
                ev.ack()
            self.stats.checkpoints += 1
            self.stats.last_checkpoint_mono = time.monotonic()
            if self.trace is not None:
                self.trace.checkpoint(len(held), started, mono_ms())
            if self.on_checkpoint is not None:
                self.on_checkpoint(self)

    def _checkpoint_soon(self) -> None:
        """Run a checkpoint in the background (one at a time; a request while one runs queues
        exactly one more), so neither the agent nor the timer waits for a flush."""
        if self._ckpt_task is not None and not self._ckpt_task.done():
            self._ckpt_again = True
            return
        self._ckpt_again = False
        self._ckpt_task = asyncio.get_running_loop().create_task(self._background_checkpoints())

    async def _background_checkpoints(self) -> None:
        try:
            while True:
                await self._checkpoint()
                if not self._ckpt_again:
                    return
                self._ckpt_again = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # as if the agent had raised it: the worker crashes
            log.exception("checkpoint failed")
            await self.app.crash(exc)

    async def _wait_checkpoints(self) -> None:
        task = self._ckpt_task
        if task is not None and not task.done():
            self._ckpt_again = False
            await asyncio.wait([task])

    # --- timers ---
    async def _heartbeat(self) -> None:
        key, value = encode_heartbeat(self.worker_name, wall_ms())
        self.producer.send(self.settings.topic_control, key, value)
        self.stats.heartbeats += 1

    async def _tick(self) -> None:
        """Advance idle live partitions by the wall clock; start a checkpoint that is due.

        Never waits, so the 200 ms timer cannot overlap itself: when the agent holds the
        processing lock it is asked to advance idle partitions after its batch; otherwise the
        advance (the core's ``advance`` runs in a thread) and checkpoints run as background tasks.
        """
        if self._guard().locked():
            self._idle_due = True
        elif self._idle_task is None or self._idle_task.done():
            self._idle_task = asyncio.get_running_loop().create_task(self._advance_idle_locked())
        sink_due = self.sink is not None and (self.sink.due() or self.app.rebalancing)
        if sink_due or (self._held and self.sink is None):
            self._checkpoint_soon()

    async def _advance_idle_locked(self) -> None:
        try:
            async with self._guard():
                await self._advance_idle()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # as if the timer had raised it: the worker crashes
            log.exception("idle advance failed")
            await self.app.crash(exc)

    async def _advance_idle(self) -> None:
        """(Processing lock held.) Mark idle partitions (no input, nothing left to read); when
        all are idle and the traffic is live, advance by the wall clock; publish and queue what
        closed."""
        self._idle_due = False
        gov = self.governor
        if gov is None:
            return
        now, mono = wall_ms(), mono_ms()
        cfg = self.config
        marked = gov.mark_idle(mono, cfg.idle_after_ms, self._high_water)
        wall_wm = gov.wall_watermark(now, self.timing, cfg.live_skew_ms)
        if not marked and wall_wm is None:
            return

        def advance() -> Outputs:
            outputs = Outputs()
            outputs.add(gov.governor.advance(wall_wm), self.keyring)
            return outputs

        outputs = await asyncio.to_thread(advance)
        if len(outputs):
            await self._publish(outputs)
            if self.sink is not None:
                self.sink.add(None, outputs.features, outputs.scores, outputs.directives)
            if self.trace is not None:
                self.trace.idle(outputs, now, self._directives_sent_ms, wall_ms())

    # --- rebalance ---
    async def _on_revoked(
        self, sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kw: Any
    ) -> None:
        async with self._guard():
            if self._held or (self.sink is not None and self.sink.pending_rows):
                await self._checkpoint()
            await self._wait_checkpoints()

    async def _on_assigned(
        self, sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kw: Any
    ) -> None:
        assigned: set[Any] = args[0] if args else kw.get("assigned", set())
        topic = self.settings.topic_events
        # no await here: awaiting the processing lock in this handler stalled the group after a
        # rebalance (tests/streams/test_worker.py, the two-worker test); the agent rebuilds
        self._assigned = {tp.partition for tp in assigned if tp.topic == topic}
        if self.governor is not None and not self.governor.built_for(self._assigned):
            # rebuilt, for the new set, on its first batch (see streams/warmup.py)
            log.info("%s: assignment now %s; state dropped", topic, sorted(self._assigned))
            self.governor = None

    def _high_water(self, partition: int) -> int | None:
        """The Faust consumer's last known high watermark of an events partition (None when it
        has not fetched it yet, or is not running)."""
        try:
            hw = self.app.consumer.highwater(TP(self.settings.topic_events, partition))
        except Exception:  # not assigned (any more), consumer stopped: unknown
            return None
        return None if hw is None else int(hw)

    async def _on_stop(self) -> None:
        async with self._guard():
            try:
                await self._wait_checkpoints()
                await self._checkpoint()
            except Exception as exc:  # shutting down: the next owner replays what was not committed
                log.warning("final checkpoint failed: %s", exc)
            finally:
                self.producer.close()

    def _guard(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _ckpt_guard(self) -> asyncio.Lock:
        if self._ckpt_lock is None:
            self._ckpt_lock = asyncio.Lock()
        return self._ckpt_lock


def make_worker_app(
    settings: Settings,
    bootstrap: str,
    store: HistoryWriter | None,
    config: WorkerConfig | None = None,
) -> StreamWorker:
    """A StreamWorker over the real core (``detectors.governor``)."""
    from detectors.governor import Governor, GovernorConfig
    from streams.governors import timing_from_config

    gconf = GovernorConfig()
    if settings.governor_config is not None:
        from detectors.config_io import load_governor_config

        gconf = load_governor_config(settings.governor_config)
    return StreamWorker(
        settings,
        bootstrap,
        governor_factory=lambda: Governor(gconf),
        timing=timing_from_config(gconf),
        store=store,
        config=config,
    )


__all__ = ["StreamWorker", "WorkerConfig", "WorkerStats", "faust", "make_worker_app"]
