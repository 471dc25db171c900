"""Ships buffered request events to the events topic as frames, from a background thread.

Order of operations, every ``linger_ms`` (or sooner when a frame's worth of events is waiting):

1. run the gateway's maintenance tick (governor state, expiry);
2. take every buffered event, group by endpoint (the partition key), cut frames of at most
   ``frame_max_events`` events, append them to the pending frames (oldest first);
3. hand pending frames to the confluent-kafka producer until it is full (``BufferError``): the rest
   stay pending and are retried next tick — never dropped for being "full right now";
4. bound memory: when buffered + pending events exceed ``max_buffered_events``, the OLDEST pending
   frames are dropped and counted (``events_dropped``); ``emit`` itself drops the oldest buffered
   event when the buffer alone is full;
5. ``producer.poll(0)`` serves delivery reports: delivered frames count as sent, failed ones
   (e.g. ``message.timeout.ms`` passed with the broker down) as dropped.

``emit`` never blocks and never raises for a full buffer or an unreachable broker.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from gateway.events import EventIds, RequestEvent, build_frames
from gateway.stats import Counters
from schemas.frames import encode_frame

log = logging.getLogger("flyball.gateway")

Event = RequestEvent | Mapping[str, Any]


class EventShipper:
    def __init__(
        self,
        kafka_conf: Mapping[str, str],
        topic: str,
        gateway_id: str,
        counters: Counters,
        *,
        max_buffered_events: int = 100_000,
        frame_max_events: int = 500,
        linger_ms: int = 50,
        delivery_timeout_ms: int = 30_000,
        max_queued_frames: int = 1_000,
        tick: Callable[[], None] | None = None,
    ) -> None:
        if max_buffered_events < 1 or frame_max_events < 1 or linger_ms < 1:
            raise ValueError("max_buffered_events, frame_max_events and linger_ms must be >= 1")
        self.topic = topic
        self.gateway_id = gateway_id
        self._c = counters
        self._max = max_buffered_events
        self._frame_max = frame_max_events
        self._linger_s = linger_ms / 1000
        self._tick = tick
        self._buf: collections.deque[Event] = collections.deque(maxlen=max_buffered_events)
        self._pending: collections.deque[tuple[str, bytes, int]] = collections.deque()
        self._pending_events = 0
        self._inflight_events = 0
        self._ids = EventIds()
        self._wake = threading.Event()
        self._woken = False
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one shipper at a time (thread, flush, close)
        self._thread: threading.Thread | None = None
        conf: dict[str, Any] = {
            "linger.ms": "5",
            "message.timeout.ms": str(delivery_timeout_ms),
            "queue.buffering.max.messages": str(max_queued_frames),
            "queue.buffering.max.kbytes": "65536",
            "enable.idempotence": "false",
            "acks": "1",
            "socket.connection.setup.timeout.ms": "3000",
            "reconnect.backoff.max.ms": "1000",
            "client.id": f"flyball-gw-{gateway_id}",
            # Connection failures are counted through error_cb (produce_errors), not logged per
            # retry: a gateway must not flood its host's logs while the broker is down.
            "log_level": "2",
        }
        conf.update(kafka_conf)
        conf["logger"] = logging.getLogger("flyball.gateway.kafka")
        conf["error_cb"] = self._on_error
        self._producer = Producer(conf)

    # --- the hot path ---
    def emit(self, event: Event) -> None:
        buf = self._buf
        if len(buf) >= self._max:
            self._c.events_dropped += 1  # the deque drops its oldest on append
        buf.append(event)
        self._c.events_emitted += 1
        if len(buf) >= self._frame_max and not self._woken:
            self._woken = True  # one wake-up per tick: Event.set() takes a lock
            self._wake.set()

    @property
    def buffered(self) -> int:
        return len(self._buf) + self._pending_events + self._inflight_events

    # --- lifecycle ---
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"flyball-ship-{self.gateway_id}", daemon=True
            )
            self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread, send what is buffered, wait up to ``timeout_s`` for delivery.

        Whatever is still undelivered then is purged and counted as dropped.
        """
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush(timeout_s)
        with self._lock:
            if self._pending:  # refused while the local queue was full: one more round
                self._send_pending()
                self._producer.flush(max(0.1, timeout_s / 2))
            self._producer.purge()  # undelivered: their reports (errors) count them as dropped
            self._producer.flush(0.5)
            self._c.events_dropped += self._pending_events
            self._pending.clear()
            self._pending_events = 0
            self._producer.close()  # close the broker connections now, not at garbage collection

    def flush(self, timeout_s: float = 5.0) -> int:
        """Send everything buffered now; return frames still undelivered after ``timeout_s``."""
        with self._lock:
            self._ship()
            return int(self._producer.flush(timeout_s))

    # --- background thread ---
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._linger_s)
            self._wake.clear()
            self._woken = False
            try:
                if self._tick is not None:
                    self._tick()
                with self._lock:
                    self._ship()
            except Exception:  # the request path must never notice: log and go on
                log.exception("gateway %s: shipping events failed", self.gateway_id)

    def _ship(self) -> None:
        buf = self._buf
        n = len(buf)
        if n:
            popleft = buf.popleft
            events = [popleft() for _ in range(n)]
            frames, invalid = build_frames(events, self.gateway_id, self._ids, self._frame_max)
            self._c.events_invalid += invalid
            for key, cols in frames:
                count = len(cols["endpoint"])
                self._pending.append((key, encode_frame(self.gateway_id, key, cols), count))
                self._pending_events += count
        self._send_pending()
        self._bound_memory()
        self._producer.poll(0)

    def _send_pending(self) -> None:
        pending, produce = self._pending, self._producer.produce
        while pending:
            key, value, count = pending[0]
            try:
                produce(
                    self.topic,
                    value=value,
                    key=key.encode(),
                    on_delivery=functools.partial(self._on_delivery, count),
                )
            except BufferError:
                self._producer.poll(0)  # the local queue is full: keep the frame, retry next tick
                return
            except KafkaException as exc:
                log.warning("gateway %s: produce failed: %s", self.gateway_id, exc)
                self._c.produce_errors += 1
                self._c.events_dropped += count
            else:
                self._inflight_events += count
            pending.popleft()
            self._pending_events -= count

    def _bound_memory(self) -> None:
        pending = self._pending
        while pending and self._pending_events + len(self._buf) > self._max:
            _, _, count = pending.popleft()
            self._pending_events -= count
            self._c.events_dropped += count

    def _on_delivery(self, count: int, err: KafkaError | None, msg: Message) -> None:
        self._inflight_events -= count
        if err is None:
            self._c.events_sent += count
            self._c.frames_sent += 1
        else:
            self._c.events_dropped += count
            self._c.produce_errors += 1

    def _on_error(self, err: KafkaError) -> None:
        self._c.broker_errors += 1
        log.debug("gateway %s: producer error: %s", self.gateway_id, err)
