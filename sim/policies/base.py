"""The gateway-policy plug-in interface.

A ``Policy`` is built once per run (``make_policy(name, ctx, params)``); it hands each gateway a
``GatewayPolicy`` (its local state: buckets, limiters, the directive table) and may set two fleet
flags: ``drop_expired`` (services discard queued work whose client gave up) and timers through
``ctx.call_at`` (the governor's control tick). For every attempt the engine calls, in order:

1. ``admit(a, now_ms) -> Decision``: admit, defer (hold ``hold_ms`` at the gateway, then send),
   reject (``retry_after_ms``; ``final`` = the request must not be retried), reroute (``target``
   endpoint index) or wait (the policy keeps the attempt until it pushes ``K_DISPATCH`` for it
   or calls ``ctx.reject(a, t, retry_after_ms)``: a gateway-side queue, e.g. a concurrency slot).
   ``applied`` and ``directive`` are what the event records.
2. ``on_result(a, now_ms)`` once the client knows the outcome (``a.status``; ``a.svc_ms``), and
   ``on_service_done(a, now_ms)`` once the service is done with a dispatched attempt (later than
   ``on_result`` when the client timed out first), or once a held attempt whose client gave up
   would have been dispatched (it is not sent: a slot granted to it is free again).
3. ``retry_delay_ms(a, client_ms)`` when the client retries: the delay to use (the client's own
   unless the policy replaces the backoff, as ``backoff-jitter`` does).

Policies must be deterministic given ``ctx.rng`` and must not read the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from schemas.directive import Directive
from sim.context import SimContext
from sim.model import Attempt

ADMIT: Final = 0
DEFER: Final = 1
REJECT: Final = 2
REROUTE: Final = 3
WAIT: Final = 4  # held by the policy until it pushes ``K_DISPATCH`` or calls ``ctx.reject``


@dataclass(frozen=True, slots=True)
class Decision:
    code: int = ADMIT
    hold_ms: int = 0
    retry_after_ms: int = 0
    final: bool = False
    target: int = -1
    applied: int = 0  # schemas.columns.APPLIED_CODES
    directive: int = 0  # index into ctx.directive_ids


ADMITTED: Final = Decision()


class GatewayPolicy:
    """One gateway's local policy state. The default admits everything and changes nothing."""

    __slots__ = ("ctx", "gateway")

    def __init__(self, ctx: SimContext, gateway: int) -> None:
        self.ctx = ctx
        self.gateway = gateway

    def admit(self, a: Attempt, now_ms: int) -> Decision:
        return ADMITTED

    def on_result(self, a: Attempt, now_ms: int) -> None:
        return None

    def retry_delay_ms(self, a: Attempt, client_ms: int) -> int:
        return client_ms

    def on_service_done(self, a: Attempt, now_ms: int) -> None:
        """The service finished (or refused) a dispatched attempt: what a gateway in front of
        the service sees, even after the client gave up (``on_result`` is what the client sees).
        Also called, at once, for a held attempt whose client gave up before it was sent."""
        return None


class Policy:
    """A fleet-wide policy: builds the gateways' local state; may run timers."""

    name: str = "none"
    drop_expired: bool = False

    def __init__(self, ctx: SimContext, params: dict[str, Any]) -> None:
        self.ctx = ctx
        self.params = dict(params)

    def gateway(self, gateway: int) -> GatewayPolicy:
        return GatewayPolicy(self.ctx, gateway)

    def start(self) -> None:
        """Called once before the first event (schedule timers here)."""
        return None

    def finish(self, now_ms: int) -> None:
        """Called once after the last event."""
        return None

    def directives(self) -> list[tuple[int, Directive]]:
        """Every directive issued during the run, with its virtual issue time in ms."""
        return []

    def stats(self) -> dict[str, int | float]:
        """Policy-specific counters reported with the metrics (``policy_stats``)."""
        return {}


def param(params: dict[str, Any], key: str, default: float, where: str) -> float:
    """A numeric policy parameter from the scenario's ``[policies.<name>]`` table."""
    v = params.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float):
        from sim.errors import ScenarioError

        raise ScenarioError(f"policies.{where}.{key}: must be a number, got {v!r}")
    return float(v)


def check_params(params: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    for k in params:
        if k not in known:
            from sim.errors import ScenarioError

            raise ScenarioError(f"policies.{where}.{k}: unknown key (known: {list(known)})")
