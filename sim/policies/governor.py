"""``governor``: Flyball itself, in virtual time.

Every ``control_tick_ms`` (scenario key, default 100 ms) the attempts whose outcome became known
since the last tick are turned into an ``EventColumns`` batch (``sim.events``), ingested by
``detectors.governor.Governor`` and the governor is advanced to the current virtual epoch time.
Each directive it issues reaches every gateway's ``gateway.enforce.DirectiveTable`` after
``control_delay_ms`` (default 200 ms); gateways decide each attempt with ``DirectiveTable.admit``,
exactly as the real gateway SDK does. The same pure core runs here as in production.

``[policies.governor]`` keys are passed to ``GovernorConfig`` (unknown keys are errors).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

from detectors.governor import Governor, GovernorConfig
from gateway.enforce import (
    DEFER_KIND,
    QUEUE_KIND,
    REJECT_KIND,
    REROUTE_KIND,
    DirectiveTable,
    RequestMeta,
)
from schemas.columns import EventColumns
from schemas.directive import Directive
from sim.context import K_DISPATCH, SimContext
from sim.errors import ScenarioError
from sim.events import ColumnBuilder
from sim.model import Attempt
from sim.policies.base import (
    ADMITTED,
    DEFER,
    REJECT,
    REROUTE,
    WAIT,
    Decision,
    GatewayPolicy,
    Policy,
)


class _GovernorOutput(Protocol):
    @property
    def directives(self) -> Any: ...


class GovernorLike(Protocol):
    """What the adapter needs of the governor (``detectors.governor.Governor``)."""

    def ingest(self, events: EventColumns) -> Any: ...

    def advance(self, watermark_ms: int) -> _GovernorOutput: ...


class _GovernedGateway(GatewayPolicy):
    __slots__ = ("table",)

    def __init__(self, ctx: SimContext, gateway: int) -> None:
        super().__init__(ctx, gateway)
        self.table = DirectiveTable(ctx.gateway_ids[gateway])

    def admit(self, a: Attempt, now_ms: int) -> Decision:
        table = self.table
        if table.empty:
            return ADMITTED
        ctx = self.ctx
        meta = RequestMeta(
            ctx.endpoint_names[a.endpoint], ctx.tenant_names[a.tenant],
            ctx.agent_id(a.tenant, a.req.intent.agent), a.priority, a.no, a.depth,
        )
        d = table.admit(meta, SimContext.EPOCH_MS + now_ms, ctx.rng)
        kind = d.kind
        a.slot = d.slot
        if kind == QUEUE_KIND:
            granted = table.enqueue(d.directive_id, a.priority, a, now_ms)
            if granted is None:
                return ADMITTED
            for w in granted:  # none here: nothing frees a slot between decision and queueing
                self._send_held(w, d.directive_id, now_ms)
            ctx.call_at(now_ms + d.delay_ms, self._give_up(a, d.directive_id, d.retry_after_ms))
            return Decision(code=WAIT, applied=d.applied,
                            directive=ctx.intern_directive(d.directive_id))
        if kind == DEFER_KIND:
            return Decision(code=DEFER, hold_ms=d.delay_ms, applied=d.applied,
                            directive=ctx.intern_directive(d.directive_id))
        if kind == REJECT_KIND:
            return Decision(code=REJECT, retry_after_ms=d.retry_after_ms, applied=d.applied,
                            directive=ctx.intern_directive(d.directive_id))
        if kind == REROUTE_KIND:
            target = ctx.endpoint_index.get(d.target)
            if target is not None:
                return Decision(code=REROUTE, target=target, applied=d.applied,
                                directive=ctx.intern_directive(d.directive_id))
        return ADMITTED

    def _give_up(self, a: Attempt, directive_id: str, retry_after_ms: int) -> Callable[[int], None]:
        def expire(now_ms: int) -> None:
            if self.table.cancel(directive_id, a):
                self.ctx.reject(a, now_ms, retry_after_ms)

        return expire

    def on_service_done(self, a: Attempt, now_ms: int) -> None:
        # the slot is the service's: it is held until the service is done with the attempt,
        # even when its client gave up earlier (a gateway in front of the service sees that)
        if a.slot:
            slot, a.slot = a.slot, ""
            for w in self.table.release(slot, now_ms):
                self._send_held(w, slot, now_ms)

    def pump(self, now_ms: int) -> None:
        for w, slot in self.table.pump(now_ms):
            self._send_held(w, slot, now_ms)

    def _send_held(self, w: object, slot: str, now_ms: int) -> None:
        assert isinstance(w, Attempt)
        w.slot = slot
        self.ctx.push(now_ms, K_DISPATCH, w)  # from the loop: a dispatch may free a slot again


def _replace(obj: Any, params: dict[str, Any], where: str) -> Any:
    """``dataclasses.replace`` that also accepts nested tables for nested config dataclasses."""
    names = {f.name for f in dataclasses.fields(obj)}
    changes: dict[str, Any] = {}
    for k, v in params.items():
        if k not in names:
            raise ScenarioError(f"{where}.{k}: unknown field of {type(obj).__name__}")
        cur = getattr(obj, k)
        if isinstance(v, dict) and dataclasses.is_dataclass(cur):
            changes[k] = _replace(cur, v, f"{where}.{k}")
        else:
            changes[k] = tuple(v) if isinstance(v, list) else v
    try:
        return dataclasses.replace(obj, **changes)
    except Exception as e:  # the config validates itself
        raise ScenarioError(f"{where}: {e}") from e


def _config(params: dict[str, Any]) -> GovernorConfig:
    """``GovernorConfig`` with the scenario's ``[policies.governor]`` overrides (nested tables
    for nested configs, e.g. ``[policies.governor.actions]``)."""
    cfg: GovernorConfig = _replace(GovernorConfig(), params, "policies.governor")
    return cfg


class GovernorPolicy(Policy):
    name = "governor"

    def __init__(self, ctx: SimContext, params: dict[str, Any],
                 governor: Callable[[], GovernorLike] | None = None) -> None:
        super().__init__(ctx, params)
        self.governor: GovernorLike = (
            governor() if governor is not None else Governor(_config(params))
        )
        self.tick_ms = ctx.scenario.control_tick_ms
        self.delay_ms = ctx.scenario.control_delay_ms
        self.builder = ColumnBuilder(ctx)
        self.cursor = 0
        self.issued: list[tuple[int, Directive]] = []
        self.gateways: list[_GovernedGateway] = []
        self.stop_ms = ctx.scenario.duration_ms + ctx.scenario.max_drain_ms()
        self.counts = {"ticks": 0, "events": 0, "late_events": 0}

    def gateway(self, gateway: int) -> GatewayPolicy:
        gw = _GovernedGateway(self.ctx, gateway)
        self.gateways.append(gw)
        return gw

    def start(self) -> None:
        self.ctx.call_at(self.tick_ms, self._tick)

    def _tick(self, now_ms: int) -> None:
        rows = self.ctx.rows
        batch = rows[self.cursor :]
        self.cursor = len(rows)
        if batch:
            self.governor.ingest(self.builder.build(batch))
            self.counts["events"] += len(batch)
        out = self.governor.advance(SimContext.EPOCH_MS + now_ms)
        for gw in self.gateways:  # waiters of limits that expired meanwhile go (fail open)
            if gw.table.has_orphans:
                gw.pump(now_ms)
        self.counts["ticks"] += 1
        self.counts["late_events"] += _count(getattr(out, "late_events", 0))
        for d in out.directives:
            self.issued.append((now_ms, d))
            self.ctx.call_at(now_ms + self.delay_ms, self._deliver(d))
        if now_ms + self.tick_ms <= self.stop_ms:
            self.ctx.call_at(now_ms + self.tick_ms, self._tick)

    def _deliver(self, d: Directive) -> Callable[[int], None]:
        def apply(now_ms: int) -> None:
            for gw in self.gateways:
                gw.table.apply(d, SimContext.EPOCH_MS + now_ms)
                gw.pump(now_ms)

        return apply

    def directives(self) -> list[tuple[int, Directive]]:
        return list(self.issued)

    def stats(self) -> dict[str, int | float]:
        return dict(self.counts)


def _count(late: Any) -> int:
    """``GovernorOutput.late_events`` as a number (a count, or a batch/list of events)."""
    if isinstance(late, int):
        return late
    try:
        return len(late)
    except TypeError:
        return 0
