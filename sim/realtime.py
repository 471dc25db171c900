"""The simulator in real time, through the real gateway SDK: what ``flyball demo`` runs.

The discrete-event engine (``sim.engine``) is left as it is; a plug-in policy does the rest:

- **pacing**: ``LivePolicy`` runs a timer every ``tick_ms`` of virtual time (and checks again in
  every ``admit``) that sleeps until the wall clock has caught up with the virtual clock, so
  virtual ms ``v`` happens at wall time ``epoch0_ms + v``. The engine processes everything between
  two ticks at once; Python keeps up as long as a tick's work takes less than a tick (the lag is
  measured and reported as ``max_lag_ms``).
- **emit**: every attempt's outcome becomes one ``RequestEvent`` (start time in epoch ms, latency,
  status, attempt number, ids, tokens, the directive that applied) emitted through a real
  ``gateway.client.Gateway``, which ships it to the events topic of the real broker.
- **admit**: with ``enforce=True`` every attempt asks ``Gateway.admit`` of its gateway, which
  decides from the directives the real stream worker published on the real control topic; the
  decision (admit / defer / reject / reroute) is handed back to the engine. With
  ``enforce=False`` everything is admitted (the gateways still emit: ungoverned, but observed).
- **directives**: a ``ControlTap`` follows the control topic and records every directive with the
  wall time it arrived; they are the run's ``directives()`` (virtual issue time = ``issued_ms`` −
  ``epoch0_ms``) so ``sim.metrics.compute`` reports them like in a simulated run.

``LiveEngine`` is ``sim.engine.Engine`` with such a policy swapped in after construction.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from flyball.clock import wall_ms
from flyball.settings import Settings
from gateway.asgi import GatewayLike
from gateway.enforce import DEFER_KIND, REJECT_KIND, REROUTE_KIND
from gateway.events import RequestEvent
from schemas.control import Heartbeat, open_control
from schemas.directive import Directive
from sim.context import SimContext
from sim.engine import Engine
from sim.model import GOOD, Attempt
from sim.policies.base import ADMITTED, DEFER, REJECT, REROUTE, Decision, GatewayPolicy, Policy
from sim.scenario import Scenario

log = logging.getLogger(__name__)

DEFAULT_TICK_MS: Final = 10
DEFAULT_PROGRESS_MS: Final = 250




class Pacer:
    """Maps virtual ms to the wall clock (``epoch0_ms + v``) and sleeps to keep them together."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._sleep = sleep
        self.t0 = 0.0
        self.epoch0_ms = 0
        self.max_lag_ms = 0.0
        self.started = False

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.epoch0_ms = wall_ms()
        self.started = True

    def wait(self, now_ms: int) -> None:
        """Sleep until virtual ``now_ms`` is due on the wall clock; record how late we are."""
        d = self.t0 + now_ms / 1000.0 - time.perf_counter()
        if d > 0:
            self._sleep(d)
        elif -d * 1000.0 > self.max_lag_ms:
            self.max_lag_ms = -d * 1000.0

    def lag_ms(self, now_ms: int) -> float:
        return max(0.0, (time.perf_counter() - self.t0) * 1000.0 - now_ms)

    def epoch_ms(self, virtual_ms: int) -> int:
        return self.epoch0_ms + virtual_ms

    def virtual_ms(self, epoch_ms: int) -> int:
        return epoch_ms - self.epoch0_ms


@dataclass(frozen=True, slots=True)
class Received:
    """A directive as the tap saw it: the directive and the wall ms it arrived."""

    directive: Directive
    received_ms: int


class ControlTap:
    """Follows every partition of a control topic from the beginning in a thread.

    Records every directive (with its arrival time) and counts heartbeats; ``heard`` is set at the
    first heartbeat (the stream worker is running).
    """

    def __init__(self, settings: Settings, bootstrap: str, name: str = "tap") -> None:
        self.topic = settings.topic_control
        conf: dict[str, Any] = {
            **settings.kafka_client_config(bootstrap),
            "group.id": f"flyball-demo-{name}-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": "false",
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": "10",
            "log_level": "2",
        }
        self._consumer = Consumer(conf)
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self.heartbeats = 0
        self.last_heartbeat_ms: int | None = None
        self.first_heartbeat_mono: float | None = None  # time.monotonic() of the first one
        self.heard = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ControlTap:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"flyball-demo-tap-{self.topic}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def directives(self) -> list[Directive]:
        return [r.directive for r in self.received()]

    def count(self) -> int:
        with self._lock:
            return len(self._received)

    def _run(self) -> None:
        consumer = self._consumer
        assigned = False
        try:
            while not self._stop.is_set():
                if not assigned:
                    assigned = self._assign(consumer)
                    if not assigned:
                        self._stop.wait(0.1)
                        continue
                try:
                    msgs = consumer.consume(500, 0.05)
                except KafkaException as exc:
                    log.debug("control tap: %s", exc)
                    self._stop.wait(0.1)
                    continue
                now = wall_ms()
                for m in msgs:
                    if m.error() is not None or m.value() is None:  # None: a tombstone
                        continue
                    # a tap records what was published: envelopes are opened, not verified
                    msg = open_control(m.value() or b"", None, allow_unsigned=True, verify=False)
                    if isinstance(msg, Directive):
                        with self._lock:
                            self._received.append(Received(msg, now))
                    elif isinstance(msg, Heartbeat):
                        self.heartbeats += 1
                        self.last_heartbeat_ms = now
                        if self.first_heartbeat_mono is None:
                            self.first_heartbeat_mono = time.monotonic()
                        self.heard.set()
        except Exception:  # a tap must never take the demo down
            log.exception("control tap on %s died", self.topic)
        finally:
            with contextlib.suppress(RuntimeError, KafkaException):
                consumer.close()

    def _assign(self, consumer: Consumer) -> bool:
        try:
            md = consumer.list_topics(self.topic, timeout=1.0)
        except KafkaException:
            return False
        t = md.topics.get(self.topic)
        if t is None or t.error is not None or not t.partitions:
            return False
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in t.partitions])
        return True


class LiveGateway(GatewayPolicy):
    """One simulated gateway backed by a real ``Gateway``: paces, admits, emits."""

    __slots__ = ("gw", "live")

    def __init__(self, ctx: SimContext, gateway: int, live: LivePolicy, gw: GatewayLike) -> None:
        super().__init__(ctx, gateway)
        self.live = live
        self.gw = gw

    def admit(self, a: Attempt, now_ms: int) -> Decision:
        live = self.live
        live.pacer.wait(now_ms)
        if not live.enforce:
            return ADMITTED
        ctx = self.ctx
        d = self.gw.admit(
            ctx.endpoint_names[a.endpoint],
            ctx.tenant_names[a.tenant],
            ctx.agent_id(a.tenant, a.req.intent.agent),
            a.priority,
            a.no,
            a.depth,
        )
        kind = d.kind
        if kind == DEFER_KIND:
            live.counts["deferred"] += 1
            return Decision(code=DEFER, hold_ms=d.delay_ms, applied=d.applied,
                            directive=ctx.intern_directive(d.directive_id))
        if kind == REJECT_KIND:
            live.counts["rejected"] += 1
            return Decision(code=REJECT, retry_after_ms=d.retry_after_ms, applied=d.applied,
                            directive=ctx.intern_directive(d.directive_id))
        if kind == REROUTE_KIND:
            target = ctx.endpoint_index.get(d.target)
            if target is not None:
                live.counts["rerouted"] += 1
                return Decision(code=REROUTE, target=target, applied=d.applied,
                                directive=ctx.intern_directive(d.directive_id))
        return ADMITTED

    def on_result(self, a: Attempt, now_ms: int) -> None:
        live = self.live
        ctx = self.ctx
        req = a.req
        intent = req.intent
        tag = live.tag
        self.gw.emit(
            RequestEvent(
                ctx.endpoint_names[a.endpoint],
                # as a real gateway stamps it: sent upstream after any hold, service time only
                ts_ms=live.pacer.epoch_ms(a.dispatch_ms),
                status=a.status,
                latency_ms=now_ms - a.dispatch_ms,
                tenant=ctx.tenant_names[a.tenant],
                agent_id=ctx.agent_id(a.tenant, intent.agent),
                attempt=a.no,
                request_id=f"{tag}r{req.id}",
                root_id=f"{tag}i{intent.id}",
                parent_id=f"{tag}r{req.parent_id}" if req.parent_id else "",
                depth=a.depth,
                priority=a.priority,
                tokens_in=intent.tokens_in,
                tokens_out=intent.tokens_out,
                directive_id=ctx.directive_ids[a.directive],
                applied=a.applied,
                event_id=f"{tag}e{a.id}",
            )
        )
        live.counts["events"] += 1


class LivePolicy(Policy):
    """Paces the run to the wall clock; gateways are real ``Gateway`` clients (see module doc)."""

    def __init__(
        self,
        ctx: SimContext,
        gateways: Sequence[GatewayLike],
        *,
        enforce: bool,
        name: str,
        tap: ControlTap | None = None,
        tag: str = "",
        pacer: Pacer | None = None,
        tick_ms: int = DEFAULT_TICK_MS,
        progress_ms: int = DEFAULT_PROGRESS_MS,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(ctx, {})
        if len(gateways) < ctx.scenario.gateways:
            raise ValueError(
                f"{ctx.scenario.gateways} gateways in the scenario, {len(gateways)} given"
            )
        self.name = name
        self.real = list(gateways)
        self.enforce = enforce
        self.tap = tap
        self.tag = tag
        self.pacer = pacer or Pacer()
        self.tick_ms = tick_ms
        self.progress_ms = progress_ms
        self.on_progress = on_progress
        self.stop_ms = ctx.scenario.duration_ms + ctx.scenario.max_drain_ms()
        self.counts: dict[str, int] = {"events": 0, "deferred": 0, "rejected": 0, "rerouted": 0}
        self._next_progress = 0

    def gateway(self, gateway: int) -> GatewayPolicy:
        return LiveGateway(self.ctx, gateway, self, self.real[gateway])

    def start(self) -> None:
        self.pacer.start()
        self.ctx.call_at(0, self._tick)

    def _tick(self, now_ms: int) -> None:
        self.pacer.wait(now_ms)
        if self.on_progress is not None and now_ms >= self._next_progress:
            self._next_progress = now_ms + self.progress_ms
            self.on_progress(now_ms)
        if now_ms + self.tick_ms <= self.stop_ms:
            self.ctx.call_at(now_ms + self.tick_ms, self._tick)

    def finish(self, now_ms: int) -> None:
        if self.on_progress is not None:
            self.on_progress(now_ms)

    def directives(self) -> list[tuple[int, Directive]]:
        if self.tap is None:
            return []
        return [(self.pacer.virtual_ms(d.issued_ms), d) for d in self.tap.directives()]

    def stats(self) -> dict[str, int | float]:
        out: dict[str, int | float] = dict(self.counts)
        out["max_lag_ms"] = round(self.pacer.max_lag_ms, 1)
        return out


class LiveEngine(Engine):
    """``sim.engine.Engine`` with a ``LivePolicy`` (built by ``make_policy(ctx)``) swapped in."""

    def __init__(
        self,
        scenario: Scenario,
        make_policy: Callable[[SimContext], LivePolicy],
        seed: int | None = None,
    ) -> None:
        super().__init__(scenario, "none", None, seed)
        live = make_policy(self.ctx)
        self.live = live
        self.policy = live
        self.policy_name = live.name
        self.gateways = [live.gateway(g) for g in range(scenario.gateways)]
        self.drop_expired = live.drop_expired

    def snapshot(self, now_ms: int) -> dict[str, Any]:
        """Live numbers for a progress display (cheap enough for a few calls per second)."""
        arrived = int(np.searchsorted(self.arrivals.t_ms, now_ms, side="right"))
        return {
            "now_s": now_ms / 1000.0,
            "arrived": arrived,
            "completed": self.outcome.count(GOOD),
            "attempts": len(self.ctx.rows),
            "directives": self.live.tap.count() if self.live.tap is not None else 0,
            "lag_ms": self.live.pacer.lag_ms(now_ms),
        }
