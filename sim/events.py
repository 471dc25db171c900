"""The attempt log as ``schemas.columns.EventColumns``: what a gateway would emit, per attempt.

Rows are the engine's int tuples (``sim.model`` ``R_*`` layout); names come from the run's
``SimContext``. Times become epoch ms (``SimContext.EPOCH_MS`` + virtual ms). Ids are strings:
``event_id`` ``e<attempt>``, ``request_id`` ``r<request>``, ``root_id`` ``i<intent>``,
``parent_id`` ``r<parent>`` ("" for a root request).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from schemas.columns import EventColumns
from sim.context import SimContext
from sim.model import (
    N_COLS,
    R_AGENT,
    R_APPLIED,
    R_ATTEMPT,
    R_DEPTH,
    R_DIRECTIVE,
    R_ENDPOINT,
    R_GATEWAY,
    R_ID,
    R_INTENT,
    R_LATENCY,
    R_PARENT,
    R_PRIORITY,
    R_REQUEST,
    R_START,
    R_STATUS,
    R_TENANT,
    R_TOKENS_IN,
    R_TOKENS_OUT,
    Row,
)

Obj = npt.NDArray[np.object_]


def _ids(prefix: str, values: npt.NDArray[np.int64]) -> Obj:
    out = np.empty(len(values), dtype=object)
    out[:] = [f"{prefix}{v}" for v in values.tolist()]
    return out


class ColumnBuilder:
    """Turns slices of the attempt log into ``EventColumns`` (name tables built once)."""

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        self.tenants = np.array(ctx.tenant_names, dtype=object)
        self.endpoints = np.array(ctx.endpoint_names, dtype=object)
        self.gateways = np.array(ctx.gateway_ids, dtype=object)
        offsets = [0]
        agents: list[str] = []
        for t, spec in enumerate(ctx.scenario.tenants):
            agents.extend(ctx.agent_id(t, a) for a in range(spec.agents))
            offsets.append(len(agents))
        self.agent_offset = np.array(offsets[:-1], dtype=np.int64)
        self.agents = np.array(agents, dtype=object)

    def build(self, rows: Sequence[Row]) -> EventColumns:
        if not rows:
            return EventColumns.empty()
        a = np.asarray(rows, dtype=np.int64).reshape(-1, N_COLS)
        directive_names = np.array(self.ctx.directive_ids, dtype=object)
        parent = a[:, R_PARENT]
        parent_ids = _ids("r", parent)
        parent_ids[parent == 0] = ""
        return EventColumns.from_arrays(
            {
                "event_id": _ids("e", a[:, R_ID]),
                "gateway_id": self.gateways[a[:, R_GATEWAY]],
                "ts_ms": a[:, R_START] + SimContext.EPOCH_MS,
                "latency_ms": a[:, R_LATENCY],
                "tenant": self.tenants[a[:, R_TENANT]],
                "agent_id": self.agents[self.agent_offset[a[:, R_TENANT]] + a[:, R_AGENT]],
                "endpoint": self.endpoints[a[:, R_ENDPOINT]],
                "status": a[:, R_STATUS],
                "attempt": a[:, R_ATTEMPT],
                "request_id": _ids("r", a[:, R_REQUEST]),
                "root_id": _ids("i", a[:, R_INTENT]),
                "parent_id": parent_ids,
                "depth": a[:, R_DEPTH],
                "priority": a[:, R_PRIORITY],
                "tokens_in": a[:, R_TOKENS_IN],
                "tokens_out": a[:, R_TOKENS_OUT],
                "directive_id": directive_names[a[:, R_DIRECTIVE]],
                "applied": a[:, R_APPLIED],
            },
            n=len(a),
        )
