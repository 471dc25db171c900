"""The directive cache: reads the control topic and keeps the gateway's directive table current.

``ControlHandler`` is the logic (no I/O, clock passed in): decode a control message, check its
signature, apply it to the table, count what was rejected and why, and track when the governor was
last heard from. ``ControlListener`` is the shell: a background thread with a confluent-kafka
consumer that assigns itself every partition of the control topic from the earliest offset (no
consumer group join, so it starts in milliseconds), replays the log to rebuild the set in force,
then follows it live with a short fetch wait (``fetch.wait.max.ms`` 10 ms). Each message is
handled in isolation (one that makes handling raise is counted as ``error`` and skipped), and a
reader that fails is restarted with a new consumer after a doubling backoff (counted as
``control_listener_restarts``; ``control_listener_up`` is 0 meanwhile).

Directives and releases must be signed by a key of the gateway's keyring (``schemas.signing``:
the signature covers the exact bytes of the directive's JSON); a bare directive is applied only
with ``allow_unsigned``. With neither, every directive is refused as ``unsigned`` and the gateway
stays ungoverned (it fails open), which ``governor_state`` and the counters show. A directive
issued more than ``max_skew_ms`` ahead of the gateway's clock is refused as ``future`` (a forger
cannot pin a directive in the future, and clocks that far apart need fixing). Heartbeats
(``{"v":1,"kind":"heartbeat","ts_ms":…,"worker":…}``) are accepted unsigned: they only keep the
gateway's "governor reachable" state and can never constrain traffic.

A message is a sign of life only when it is recent: its own time (``ts_ms`` of a heartbeat,
``issued_ms`` of a directive) is at most ``silence_ms`` before the gateway's clock. So replaying an
old log at start-up does not make a dead governor look alive (clock skew up to ``silence_ms`` is
tolerated).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from flyball.logbudget import LogBudget
from gateway.enforce import DirectiveTable
from gateway.stats import Counters
from schemas.control import Heartbeat, Refused, open_control
from schemas.directive import Directive
from schemas.signing import Keyring

log = logging.getLogger("flyball.gateway")
_REJECT_LOG = LogBudget(per_s=5)  # rejected control messages: counted always, logged this often


def wake_all(granted: list[tuple[object, str]]) -> None:
    """Wake waiters the table granted a slot (``""``: their limit is gone, go anyway)."""
    for w, slot in granted:
        w.slot = slot  # type: ignore[attr-defined]
        w.wake()  # type: ignore[attr-defined]


class ControlHandler:
    """Applies control messages to a table; tracks the governor's liveness."""

    def __init__(
        self,
        table: DirectiveTable,
        counters: Counters,
        *,
        keyring: Keyring | None,
        allow_unsigned: bool = False,
        max_skew_ms: int = 5_000,
        silence_ms: int,
        started_ms: int,
        lock: threading.Lock | None = None,
    ) -> None:
        self.table = table
        self._c = counters
        self._ring = keyring
        self._allow_unsigned = allow_unsigned
        self._max_skew_ms = max_skew_ms
        self.silence_ms = silence_ms
        self.started_ms = started_ms
        self.last_heard_ms: int | None = None
        self._lock = lock if lock is not None else threading.Lock()

    @property
    def counters(self) -> Counters:
        return self._c

    def handle(self, data: bytes | None, now_ms: int) -> str:
        """Process one message value; return the outcome (a reject reason or what was done).

        Every message is handled in isolation: one that makes handling raise is counted
        (``error``) and logged, and the next is read as if it had not been there."""
        try:
            return self._handle(data, now_ms)
        except Exception:
            log.exception("control message could not be handled (skipped)")
            return self._reject("error")

    def _handle(self, data: bytes | None, now_ms: int) -> str:
        self._c.control_messages += 1
        if data is None:
            return "tombstone"  # an ended episode's key, compacted away: nothing to apply
        msg = open_control(data, self._ring, allow_unsigned=self._allow_unsigned)
        if isinstance(msg, Refused):
            if _REJECT_LOG.take():  # whoever can write the topic must not flood the host's log
                if msg.error is not None:
                    log.warning("control message rejected: %s", msg.error.describe())
                else:
                    log.warning("directive rejected: %s (control_keys must hold the key the "
                                "workers sign with)", msg.reason)
            return self._reject(msg.reason)
        if isinstance(msg, Heartbeat):
            self._c.heartbeats += 1
            self._heard(msg.ts_ms, now_ms)
            return "heartbeat"
        if msg.issued_ms > now_ms + self._max_skew_ms:
            return self._reject("future", msg)
        self._heard(msg.issued_ms, now_ms)
        return self.handle_directive_trusted(msg, now_ms)

    def handle_directive_trusted(self, d: Directive, now_ms: int) -> str:
        """Apply ``d`` without a signature check (in-process callers) and count the outcome."""
        with self._lock:
            outcome = self.table.apply(d, now_ms)
            granted = self.table.pump(now_ms)  # a raised, released or expired limit lets waiters go
        wake_all(granted)
        if outcome in ("applied", "refreshed"):
            self._c.directives_applied += 1
        elif outcome == "released":
            self._c.directives_released += 1
        elif outcome in ("expired", "stale"):
            self._c.directives_rejected[outcome] += 1
        return outcome

    def _reject(self, reason: str, d: Directive | None = None) -> str:
        self._c.directives_rejected[reason] += 1
        if d is not None and _REJECT_LOG.take():
            log.warning("directive %s rejected: %s", d.id, reason)
        return reason

    def _heard(self, msg_ms: int, now_ms: int) -> None:
        if msg_ms >= now_ms - self.silence_ms:
            self.last_heard_ms = now_ms

    def governor_state(self, now_ms: int) -> str:
        """``"ok"``, ``"unreachable"`` (silent > ``silence_ms``) or ``"connecting"`` (at start)."""
        heard = self.last_heard_ms
        if heard is None:
            return "connecting" if now_ms - self.started_ms <= self.silence_ms else "unreachable"
        return "ok" if now_ms - heard <= self.silence_ms else "unreachable"


class ControlListener:
    """Background thread: follows every partition of the control topic from the beginning."""

    def __init__(
        self,
        kafka_conf: Mapping[str, str],
        topic: str,
        handler: ControlHandler,
        gateway_id: str,
        clock_ms: Callable[[], int],
        *,
        poll_ms: int = 20,
        metadata_refresh_ms: int = 2_000,
        restart_min_ms: int = 100,
        restart_max_ms: int = 5_000,
    ) -> None:
        self.topic = topic
        self._handler = handler
        self._counters = handler.counters
        self._restart_min_s = restart_min_ms / 1000
        self._restart_max_s = restart_max_ms / 1000
        self._running = False
        self._clock_ms = clock_ms
        self._poll_s = poll_ms / 1000
        self._refresh_ms = metadata_refresh_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._assigned: set[int] = set()
        self.caught_up = threading.Event()  # set once the backlog at start has been read
        conf: dict[str, Any] = {
            # Unique per instance: we assign partitions manually and never commit, so the group
            # only names this reader; no join, no rebalance.
            "group.id": f"flyball-gw-{gateway_id}-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": "false",
            "enable.auto.offset.store": "false",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": "6000",
            "fetch.wait.max.ms": "10",
            "fetch.error.backoff.ms": "100",
            "socket.connection.setup.timeout.ms": "3000",
            "reconnect.backoff.max.ms": "1000",
            "client.id": f"flyball-gw-{gateway_id}-control",
            "log_level": "2",  # connection failures show as governor_state, not per-retry logs
        }
        conf.update(kafka_conf)
        conf["logger"] = logging.getLogger("flyball.gateway.kafka")
        self._conf = conf
        self._consumer: Consumer | None = None

    @property
    def running(self) -> bool:
        """The reader is consuming (False while it restarts after a failure, or stopped)."""
        return self._running

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._supervise, name=f"flyball-control-{self.topic}", daemon=True
            )
            self._thread.start()

    def _supervise(self) -> None:
        """Run the reader; when it fails, count it, wait (doubling up to ``restart_max_ms``) and
        start it again from the beginning of the log with a new consumer: a gateway is never
        left ungoverned by one failure (enforcement fails open by expiry meanwhile)."""
        backoff_s = self._restart_min_s
        while not self._stop.is_set():
            self._assigned = set()
            try:
                self._consumer = Consumer(self._conf)
                self._running = True
                self._run()
                return  # stopped
            except Exception:
                log.exception("control listener for %s failed; restarting", self.topic)
            finally:
                self._running = False
                consumer, self._consumer = self._consumer, None
                if consumer is not None:
                    with contextlib.suppress(RuntimeError, KafkaException):
                        consumer.close()
            self._counters.control_listener_restarts += 1
            self._stop.wait(backoff_s)
            backoff_s = min(backoff_s * 2, self._restart_max_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        next_refresh_ms = 0
        while not self._stop.is_set():
            now_ms = self._clock_ms()
            if now_ms >= next_refresh_ms:
                self._assign_new_partitions(consumer)
                next_refresh_ms = now_ms + (self._refresh_ms if self._assigned else 200)
            if not self._assigned:
                self._stop.wait(self._poll_s)
                continue
            try:
                msgs = consumer.consume(500, self._poll_s)
            except KafkaException as exc:
                log.warning("control consumer: %s", exc)
                self._stop.wait(0.1)
                continue
            handle, now_ms = self._handler.handle, self._clock_ms()
            for m in msgs:
                err = m.error()
                if err is not None:
                    log.debug("control consumer: %s", err)
                    continue
                handle(m.value(), now_ms)
            if not msgs and not self.caught_up.is_set():
                self.caught_up.set()

    def _assign_new_partitions(self, consumer: Consumer) -> None:
        try:
            md = consumer.list_topics(self.topic, timeout=0.5)
        except KafkaException as exc:
            log.debug("control topic metadata: %s", exc)
            return
        tmd = md.topics.get(self.topic)
        if tmd is None or tmd.error is not None:
            return
        new = sorted(set(tmd.partitions) - self._assigned)
        if new:
            consumer.incremental_assign(
                [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in new]
            )
            self._assigned.update(new)


