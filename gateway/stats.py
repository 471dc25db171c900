"""Gateway counters and state: a snapshot in process, Prometheus metrics for scraping.

Counters are plain ints bumped on the request path (no lock: under heavy multi-threading an
increment can rarely be lost; they are monitoring numbers, not accounting). The Prometheus
collector reads them at scrape time, so metrics cost nothing per request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

GOVERNOR_STATES: Final[tuple[str, ...]] = ("connecting", "ok", "unreachable")

# Why a control-topic message was not applied.
REJECT_REASONS: Final[tuple[str, ...]] = (
    "malformed",  # not a valid directive/heartbeat (schemas.control.decode_control)
    "error",  # handling it raised (logged with its traceback; the listener goes on)
    "unsigned",  # a bare directive, and allow_unsigned is off (the default)
    "unknown_key",  # signed by a key id (or algorithm) this gateway's keyring does not hold
    "forged",  # the signature does not match the signed bytes
    "future",  # issued further ahead of the gateway's clock than max_clock_skew_ms
    "expired",  # already past expires_ms when it arrived
    "stale",  # older issued_ms than the directive in force with the same id
)


class Counters:
    """Running counters, mutated by the gateway's threads."""

    __slots__ = (
        "admitted",
        "broker_errors",
        "control_listener_restarts",
        "control_messages",
        "deferred",
        "directives_applied",
        "directives_rejected",
        "directives_released",
        "events_dropped",
        "events_emitted",
        "events_invalid",
        "events_sent",
        "frames_sent",
        "heartbeats",
        "produce_errors",
        "rejected",
        "rerouted",
    )

    def __init__(self) -> None:
        self.admitted = 0
        self.deferred = 0
        self.rejected = 0
        self.rerouted = 0
        self.events_emitted = 0
        self.events_sent = 0
        self.events_dropped = 0
        self.events_invalid = 0
        self.frames_sent = 0
        self.produce_errors = 0
        self.broker_errors = 0
        self.control_messages = 0
        self.control_listener_restarts = 0
        self.heartbeats = 0
        self.directives_applied = 0
        self.directives_released = 0
        self.directives_rejected: dict[str, int] = dict.fromkeys(REJECT_REASONS, 0)


@dataclass(frozen=True, slots=True)
class GatewayStats:
    """An immutable snapshot of one gateway's counters and state."""

    gateway_id: str
    governor_state: str  # one of GOVERNOR_STATES
    governor_last_heard_ms: int | None  # gateway clock; None: never heard
    failing_open: bool  # unreachable and fail_mode="open": admitting everything
    directives_in_force: int
    admitted: int
    deferred: int
    rejected: int
    rerouted: int
    events_emitted: int
    events_sent: int
    events_dropped: int
    events_invalid: int
    events_buffered: int
    frames_sent: int
    produce_errors: int
    broker_errors: int
    control_messages: int
    control_listener_restarts: int
    control_listener_up: bool  # the control-topic reader is running (False: restarting/stopped)
    heartbeats: int
    directives_applied: int
    directives_released: int
    directives_rejected: dict[str, int] = field(default_factory=dict)

    @property
    def governor_unreachable(self) -> bool:
        return self.governor_state == "unreachable"


class GatewayCollector(Collector):
    """Prometheus collector over a stats-snapshot function (read at scrape time)."""

    def __init__(self, snapshot: Callable[[], GatewayStats]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()
        gid = [s.gateway_id]

        def counter(name: str, doc: str, value: int) -> CounterMetricFamily:
            c = CounterMetricFamily(f"flyball_gateway_{name}", doc, labels=["gateway_id"])
            c.add_metric(gid, value)
            return c

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(f"flyball_gateway_{name}", doc, labels=["gateway_id"])
            g.add_metric(gid, value)
            return g

        decisions = CounterMetricFamily(
            "flyball_gateway_decisions", "admit decisions by kind", labels=["gateway_id", "kind"]
        )
        for kind, n in (
            ("admit", s.admitted),
            ("defer", s.deferred),
            ("reject", s.rejected),
            ("reroute", s.rerouted),
        ):
            decisions.add_metric([s.gateway_id, kind], n)
        yield decisions
        rejected = CounterMetricFamily(
            "flyball_gateway_directives_rejected",
            "control messages not applied, by reason",
            labels=["gateway_id", "reason"],
        )
        for reason, n in sorted(s.directives_rejected.items()):
            rejected.add_metric([s.gateway_id, reason], n)
        yield rejected
        state = GaugeMetricFamily(
            "flyball_gateway_governor_state",
            "1 for the current governor state",
            labels=["gateway_id", "state"],
        )
        for name in GOVERNOR_STATES:
            state.add_metric([s.gateway_id, name], 1.0 if s.governor_state == name else 0.0)
        yield state
        yield gauge(
            "governor_unreachable",
            "1 when nothing was heard from the governor for longer than governor_silence_ms",
            1.0 if s.governor_unreachable else 0.0,
        )
        yield gauge("failing_open", "1 while admitting everything", float(s.failing_open))
        yield gauge("directives_in_force", "directives currently enforced", s.directives_in_force)
        yield gauge("events_buffered", "events waiting to be sent", s.events_buffered)
        yield counter("events_emitted", "events handed to emit()", s.events_emitted)
        yield counter("events_sent", "events delivered to the broker", s.events_sent)
        yield counter("events_dropped", "events dropped (buffer full)", s.events_dropped)
        yield counter("events_invalid", "events dropped as invalid (no endpoint)", s.events_invalid)
        yield counter("frames_sent", "event frames delivered", s.frames_sent)
        yield counter("produce_errors", "event frames that failed delivery", s.produce_errors)
        yield counter("broker_errors", "client errors (e.g. broker unreachable)", s.broker_errors)
        yield counter("control_messages", "control-topic messages read", s.control_messages)
        yield counter(
            "control_listener_restarts",
            "times the control-topic reader failed and was restarted",
            s.control_listener_restarts,
        )
        yield gauge(
            "control_listener_up", "1 while the control-topic reader runs",
            float(s.control_listener_up),
        )
        yield counter("heartbeats", "governor heartbeats read", s.heartbeats)
        yield counter("directives_applied", "directives applied or refreshed", s.directives_applied)
        yield counter("directives_released", "directives released", s.directives_released)


def make_registry(snapshot: Callable[[], GatewayStats]) -> CollectorRegistry:
    """A per-gateway registry holding only this gateway's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(snapshot))
    return registry


def metrics_text(registry: CollectorRegistry) -> bytes:
    """Prometheus text exposition of ``registry``."""
    return generate_latest(registry)
