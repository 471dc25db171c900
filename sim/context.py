"""What a policy may see of a running simulation: names, the clock, the attempt log, a timer."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any, Final

from sim.model import Row
from sim.rand import RandomStream
from sim.scenario import Scenario

# Event kinds on the heap (ints: cheap to compare and dispatch).
K_SEND: Final = 0  # a request makes a new attempt (obj: Request)
K_DISPATCH: Final = 1  # a held attempt leaves the gateway (obj: Attempt)
K_DONE: Final = 2  # a service finishes an attempt (obj: Attempt)
K_TIMEOUT: Final = 3  # a client's timeout for an attempt (obj: Attempt)
K_CALL: Final = 4  # a policy timer (obj: Callable[[int], None])
K_EDGE: Final = 5  # a fault starts or ends on a service (obj: service index)

Event = tuple[int, int, int, Any]


def _unset(*_: Any) -> None:
    raise RuntimeError("no engine is attached to this SimContext")


class SimContext:
    """Shared by the engine and the policies of one run. Time is virtual integer ms from 0.

    ``EPOCH_MS`` is added where events leave the simulator (``EventColumns.ts_ms``), so they look
    like real epoch times to the governor.
    """

    EPOCH_MS: Final = 1_700_000_000_000

    def __init__(self, scenario: Scenario, rng: RandomStream) -> None:
        self.scenario = scenario
        self.rng = rng
        self.now_ms = 0
        self.heap: list[Event] = []
        self._seq = itertools.count()
        self.tenant_names: tuple[str, ...] = tuple(t.name for t in scenario.tenants)
        self.endpoint_names: tuple[str, ...] = tuple(s.name for s in scenario.services)
        self.endpoint_index: dict[str, int] = {n: i for i, n in enumerate(self.endpoint_names)}
        self.gateway_ids: tuple[str, ...] = tuple(f"gw-{i}" for i in range(scenario.gateways))
        self.rows: list[Row] = []
        self.directive_ids: list[str] = [""]
        self._directive_index: dict[str, int] = {"": 0}
        self._agent_ids: list[list[str]] = [[] for _ in scenario.tenants]
        # set by the engine: reject an attempt a policy held (``WAIT``); a held attempt is sent
        # by pushing ``K_DISPATCH`` for it
        self.reject: Callable[[Any, int, int], None] = _unset

    def push(self, t_ms: int, kind: int, obj: Any) -> None:
        heapq.heappush(self.heap, (t_ms, next(self._seq), kind, obj))

    def call_at(self, t_ms: int, fn: Callable[[int], None]) -> None:
        """Run ``fn(now_ms)`` at virtual time ``t_ms`` (not before now)."""
        self.push(max(t_ms, self.now_ms), K_CALL, fn)

    def intern_directive(self, directive_id: str) -> int:
        idx = self._directive_index.get(directive_id)
        if idx is None:
            idx = len(self.directive_ids)
            self.directive_ids.append(directive_id)
            self._directive_index[directive_id] = idx
        return idx

    def agent_id(self, tenant: int, agent: int) -> str:
        ids = self._agent_ids[tenant]
        if not ids:
            name = self.tenant_names[tenant]
            ids.extend(f"{name}-{i}" for i in range(self.scenario.tenants[tenant].agents))
        return ids[agent]

    def tenant_endpoints(self, tenant: int) -> set[int]:
        return {self.endpoint_index[e] for e in self.scenario.tenants[tenant].endpoints}
