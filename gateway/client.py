"""``Gateway`` and ``AsyncGateway``: what a gateway process embeds.

- ``admit(...)`` decides locally from the directives in force (no network); with nothing in force it
  is two attribute reads and a counter increment.
- ``emit(event)`` appends to a bounded buffer; a background thread ships frames to Kafka.
- A control-topic listener keeps the directives current and tracks the governor's liveness.
- Fail open, visibly: when nothing (no directive, no heartbeat) was heard from the governor for
  longer than ``governor_silence_ms``, ``stats().governor_state`` is ``"unreachable"`` and, with
  ``fail_mode="open"`` (default), every request is admitted. ``fail_mode="expire"`` keeps enforcing
  the cached directives until each expires (they all do).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal

from prometheus_client import CollectorRegistry

from flyball.clock import wall_ms
from flyball.settings import Settings, load_settings
from gateway.control import ControlHandler, ControlListener, wake_all
from gateway.enforce import (
    ADMIT,
    DEFER_KIND,
    QUEUE_KIND,
    REJECT_KIND,
    Decision,
    DirectiveTable,
    RandomSource,
    RequestMeta,
)
from gateway.events import RequestEvent
from gateway.shipper import EventShipper
from gateway.stats import Counters, GatewayStats, make_registry, metrics_text
from schemas.directive import Directive

FailMode = Literal["open", "expire"]


class Gateway:
    """The synchronous gateway client. Thread-safe; start it once, ``close()`` at shutdown.

    ``bootstrap`` overrides ``settings.kafka_bootstrap`` (e.g. the embedded broker's address);
    ``kafka_options`` adds or overrides librdkafka options for both the producer and the consumer.
    ``control=False`` runs without a control listener (directives only via ``apply_directive``).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        gateway_id: str = "gw",
        *,
        bootstrap: str | None = None,
        governor_silence_ms: int | None = None,
        fail_mode: FailMode | None = None,
        max_buffered_events: int = 100_000,
        frame_max_events: int = 500,
        linger_ms: int = 50,
        delivery_timeout_ms: int = 30_000,
        max_queued_frames: int = 1_000,
        kafka_options: Mapping[str, str] | None = None,
        control: bool = True,
        rng: RandomSource | None = None,
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        settings = settings if settings is not None else load_settings()
        if governor_silence_ms is None:
            governor_silence_ms = settings.gateway_silence_ms
        if fail_mode is None:
            fail_mode = settings.gateway_fail_mode
        if fail_mode not in ("open", "expire"):
            raise ValueError("fail_mode must be 'open' or 'expire'")
        if governor_silence_ms < 1:
            raise ValueError("governor_silence_ms must be >= 1")
        conf = dict(settings.kafka_client_config(bootstrap))
        conf.update(kafka_options or {})
        self.gateway_id = gateway_id
        self.settings = settings
        self.fail_mode: FailMode = fail_mode
        self._clock_ms = clock_ms
        self._rng: RandomSource = rng if rng is not None else random.Random()
        self._c = Counters()
        # Serialises table changes (control thread, expiry tick) and the decisions of ``admit``
        # once anything is in force (nothing in force: no lock): a concurrency limit's slot
        # count is read and written by admitting threads and by completing ones (``done``), and
        # an interleaved update would leak or double-count a slot for the episode.
        self._lock = threading.Lock()
        self._table = DirectiveTable(gateway_id, lazy_purge=False)  # purged by _tick, locked
        self._bypass = False  # True while failing open
        self._handler = ControlHandler(
            self._table,
            self._c,
            keyring=settings.keyring(),
            allow_unsigned=settings.allow_unsigned,
            max_skew_ms=settings.max_clock_skew_ms,
            silence_ms=governor_silence_ms,
            started_ms=clock_ms(),
            lock=self._lock,
        )
        self._shipper = EventShipper(
            conf,
            settings.topic_events,
            gateway_id,
            self._c,
            max_buffered_events=max_buffered_events,
            frame_max_events=frame_max_events,
            linger_ms=linger_ms,
            delivery_timeout_ms=delivery_timeout_ms,
            max_queued_frames=max_queued_frames,
            tick=self._tick,
        )
        self._listener = (
            ControlListener(
                {**conf, "session.timeout.ms": str(settings.kafka_session_timeout_ms)},
                settings.topic_control,
                self._handler,
                gateway_id,
                clock_ms,
            )
            if control
            else None
        )
        self._registry: CollectorRegistry | None = None
        self._started = False
        self._closed = False

    # --- lifecycle ---
    def start(self) -> Gateway:
        if not self._started:
            self._started = True
            self._handler.started_ms = self._clock_ms()
            self._shipper.start()
            if self._listener is not None:
                self._listener.start()
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop listening, flush buffered events (up to ``timeout_s``), stop the threads."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.stop()
        self._shipper.close(timeout_s)

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def wait_caught_up(self, timeout_s: float = 5.0) -> bool:
        """Block until the control topic's backlog at start has been read (for tests, start-up)."""
        return self._listener is not None and self._listener.caught_up.wait(timeout_s)

    # --- the hot path ---
    def admit(
        self,
        endpoint: str,
        tenant: str = "",
        agent_id: str = "",
        priority: int = 0,
        attempt: int = 0,
        depth: int = 0,
    ) -> Decision:
        """Decide for one request attempt: admit / defer(ms) / reject(retry_after_ms) / reroute."""
        table = self._table
        if table.empty or self._bypass:
            self._c.admitted += 1
            return ADMIT
        with self._lock:  # a concurrency slot must not be taken while another is freed
            d = table.decide(
                endpoint, tenant, agent_id, priority, attempt, depth, self._clock_ms(), self._rng
            )
        if d is ADMIT:
            self._c.admitted += 1
            return d
        return self._count(d)

    def admit_meta(self, req: RequestMeta) -> Decision:
        return self.admit(
            req.endpoint, req.tenant, req.agent_id, req.priority, req.attempt, req.depth
        )

    def _count(self, d: Decision) -> Decision:
        kind = d.kind
        c = self._c
        if kind == "admit":
            c.admitted += 1
        elif kind == DEFER_KIND:
            c.deferred += 1
        elif kind == REJECT_KIND:
            c.rejected += 1
        elif kind == QUEUE_KIND:
            pass  # counted when the wait ends (``wait_slot``)
        else:
            c.rerouted += 1
        return d

    def emit(self, event: RequestEvent | Mapping[str, Any]) -> None:
        """Buffer one request event; never blocks. Missing ``ts_ms`` is set to now.

        A ``RequestEvent`` is taken as is (the gateway owns it afterwards); a mapping is copied.
        """
        if not isinstance(event, RequestEvent):
            ev = dict(event)
            if "ts_ms" not in ev:
                ev["ts_ms"] = self._clock_ms()
            event = ev
        self._shipper.emit(event)

    def flush(self, timeout_s: float = 5.0) -> int:
        """Ship buffered events now; return frames still undelivered after ``timeout_s``."""
        return self._shipper.flush(timeout_s)

    # --- directives ---
    def apply_directive(self, d: Directive) -> str:
        """Apply a directive in process, bypassing the control topic (trusted: no signature check).

        For the simulator, tests and benchmarks; production directives come from the control topic.
        """
        return self._handler.handle_directive_trusted(d, self._clock_ms())

    def directives(self) -> list[Directive]:
        return self._table.directives()

    # --- state ---
    def _tick(self) -> None:
        """Maintenance, every ``linger_ms`` from the shipper thread: liveness, expiry."""
        now_ms = self._clock_ms()
        state = self._handler.governor_state(now_ms)
        self._bypass = self.fail_mode == "open" and state == "unreachable"
        if now_ms >= self._table.next_expiry_ms or self._table.has_orphans:
            with self._lock:
                self._table.purge(now_ms)
                granted = self._table.pump(now_ms)
            wake_all(granted)

    # --- concurrency limits: a ``"queue"`` decision waits here for a slot ---
    def wait_slot(self, d: Decision, priority: int = 0) -> Decision:
        """Block until a ``"queue"`` decision gets a slot (admitted, holding it: call ``done``)
        or waited ``d.delay_ms`` (rejected with ``d.retry_after_ms``; admitted without a slot
        while failing open). Any other decision is returned as it is."""
        if d.kind != QUEUE_KIND:
            return d
        w = _ThreadWaiter()
        parked = self._park(d, priority, w)
        if parked:
            w.event.wait(d.delay_ms / 1000)
        return self._after_wait(d, w, parked)

    async def wait_slot_async(self, d: Decision, priority: int = 0) -> Decision:
        """``wait_slot`` for coroutines: the wait does not block the event loop."""
        if d.kind != QUEUE_KIND:
            return d
        w = _AsyncWaiter(asyncio.get_running_loop())
        parked = self._park(d, priority, w)
        if parked:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(w.future), d.delay_ms / 1000)
        return self._after_wait(d, w, parked)

    def _park(self, d: Decision, priority: int, w: _ThreadWaiter | _AsyncWaiter) -> bool:
        """Queue ``w`` for a slot of ``d``'s limit; False when the limit is gone (admit)."""
        with self._lock:
            granted = self._table.enqueue(d.directive_id, priority, w, self._clock_ms())
        if granted is None:
            return False
        wake_all([(g, d.directive_id) for g in granted])  # a slot freed since the decision
        return True

    def _after_wait(self, d: Decision, w: _ThreadWaiter | _AsyncWaiter, parked: bool) -> Decision:
        if parked and not w.woken:
            with self._lock:
                gave_up = self._table.cancel(d.directive_id, w)
            if gave_up and not self._bypass:
                self._c.rejected += 1
                return Decision(REJECT_KIND, retry_after_ms=d.retry_after_ms,
                                directive_id=d.directive_id, applied=d.applied)
            # granted as the wait ran out, or failing open
        self._c.admitted += 1
        return Decision("admit", directive_id=d.directive_id, applied=d.applied, slot=w.slot)

    def done(self, d: Decision) -> None:
        """The request admitted with ``d`` completed (or was abandoned): free its slot."""
        if not d.slot:
            return
        with self._lock:
            granted = self._table.release(d.slot, self._clock_ms())
        wake_all([(w, d.slot) for w in granted])

    @property
    def governor_state(self) -> str:
        return self._handler.governor_state(self._clock_ms())

    def stats(self) -> GatewayStats:
        now_ms = self._clock_ms()
        c = self._c
        state = self._handler.governor_state(now_ms)
        return GatewayStats(
            gateway_id=self.gateway_id,
            governor_state=state,
            governor_last_heard_ms=self._handler.last_heard_ms,
            failing_open=self.fail_mode == "open" and state == "unreachable",
            directives_in_force=self._table.in_force(now_ms),
            admitted=c.admitted,
            deferred=c.deferred,
            rejected=c.rejected,
            rerouted=c.rerouted,
            events_emitted=c.events_emitted,
            events_sent=c.events_sent,
            events_dropped=c.events_dropped,
            events_invalid=c.events_invalid,
            events_buffered=self._shipper.buffered,
            frames_sent=c.frames_sent,
            produce_errors=c.produce_errors,
            broker_errors=c.broker_errors,
            control_messages=c.control_messages,
            control_listener_restarts=c.control_listener_restarts,
            control_listener_up=self._listener is not None and self._listener.running,
            heartbeats=c.heartbeats,
            directives_applied=c.directives_applied,
            directives_released=c.directives_released,
            directives_rejected=dict(c.directives_rejected),
        )

    @property
    def registry(self) -> CollectorRegistry:
        """This gateway's own Prometheus registry (its metrics only)."""
        if self._registry is None:
            self._registry = make_registry(self.stats)
        return self._registry

    def metrics_text(self) -> bytes:
        """Prometheus text exposition of this gateway's metrics."""
        return metrics_text(self.registry)


class _ThreadWaiter:
    __slots__ = ("event", "slot", "woken")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.slot = ""
        self.woken = False

    def wake(self) -> None:
        self.woken = True
        self.event.set()


class _AsyncWaiter:
    __slots__ = ("future", "loop", "slot", "woken")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.slot = ""
        self.woken = False

    def wake(self) -> None:
        self.woken = True
        self.loop.call_soon_threadsafe(_resolve, self.future)


def _resolve(f: asyncio.Future[None]) -> None:
    if not f.done():
        f.set_result(None)


class AsyncGateway:
    """The asyncio flavour: wraps a ``Gateway``; nothing here blocks the event loop.

    ``admit`` and ``emit`` are plain (non-blocking) methods usable from coroutines; ``admit_wait``
    also sleeps out a defer. ``close`` flushes in a worker thread.
    """

    def __init__(self, settings: Settings | None = None, gateway_id: str = "gw", **kw: Any) -> None:
        self.sync = Gateway(settings, gateway_id, **kw)
        self.gateway_id = gateway_id
        self.admit = self.sync.admit
        self.admit_meta = self.sync.admit_meta
        self.emit = self.sync.emit
        self.stats = self.sync.stats
        self.metrics_text = self.sync.metrics_text
        self.apply_directive = self.sync.apply_directive
        self.done = self.sync.done
        self.wait_slot = self.sync.wait_slot
        self.wait_slot_async = self.sync.wait_slot_async

    async def start(self) -> AsyncGateway:
        self.sync.start()  # creates clients and threads only; no network wait
        return self

    async def close(self, timeout_s: float = 5.0) -> None:
        await asyncio.to_thread(self.sync.close, timeout_s)

    async def __aenter__(self) -> AsyncGateway:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def admit_wait(
        self,
        endpoint: str,
        tenant: str = "",
        agent_id: str = "",
        priority: int = 0,
        attempt: int = 0,
        depth: int = 0,
    ) -> Decision:
        """``admit``, then ``await asyncio.sleep`` for a defer or wait for a concurrency slot.
        Returns the decision (``done(decision)`` when the request completes)."""
        d = self.sync.admit(endpoint, tenant, agent_id, priority, attempt, depth)
        if d.kind == DEFER_KIND and d.delay_ms > 0:
            await asyncio.sleep(d.delay_ms / 1000)
        return await self.sync.wait_slot_async(d, priority)


def admit_wait_sync(gateway: Gateway, req: RequestMeta) -> Decision:
    """``admit`` then ``time.sleep`` for a defer (for synchronous callers)."""
    d = gateway.admit_meta(req)
    if d.kind == DEFER_KIND and d.delay_ms > 0:
        time.sleep(d.delay_ms / 1000)
    return gateway.wait_slot(d, req.priority)
