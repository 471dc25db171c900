"""Fan-out amplification: requests per root intent, or tree depth, growing vs the baseline.

Runs on tenant keys (a tenant's intents across endpoints). Retries are not fan-out: both
features count each request once, and count roots as they enter or as they answer, whichever is
more (``fanout`` in detectors/features.py), so a retry backlog draining (old intents' roots
answering on a retry and spawning their sub-requests late) does not read as fan-out. Score =
max(ramp(fanout / baseline, grow_lo, grow_hi) x z-gate(fanout),
    ramp(depth_mean - baseline, depth_lo, depth_hi) x z-gate(depth)) x evidence-gate(root intents).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from detectors.actions import EvalContext, priority_floor
from detectors.layout import F64, KIND_TENANT, N_PRIORITIES, PRIO0
from detectors.policy import Planned
from detectors.rule import Rule
from detectors.scores.base import Detector, DetectorConfig, ramp
from detectors.windows import Key
from schemas.directive import Action, Scope

if TYPE_CHECKING:
    from detectors.config import GovernorConfig


@dataclass(frozen=True, slots=True)
class FanoutConfig(DetectorConfig):
    grow_lo: float = 1.3
    grow_hi: float = 2.0
    depth_lo: float = 0.3
    depth_hi: float = 1.0
    fanout_floor: float = 0.1
    depth_floor: float = 0.05
    min_roots: float = 5.0


class Fanout(Detector[FanoutConfig]):
    name = "fanout"
    inputs = ("fanout", "depth_mean", "root_intents")
    baselines = ("fanout", "depth")
    config_type = FanoutConfig

    def _score(self, x: Mapping[str, F64]) -> tuple[F64, dict[str, F64], dict[str, F64]]:
        c = self.config
        fan, depth = x["fanout"], x["depth_mean"]
        base_fan = np.maximum(self.state["fanout"].mean, 1.0)
        base_depth = self.state["depth"].mean
        z_fan = self._z("fanout", fan, c.fanout_floor)
        z_depth = self._z("depth", depth, c.depth_floor)
        s_fan = ramp(fan / base_fan, c.grow_lo, c.grow_hi) * self._gate(z_fan)
        s_depth = ramp(depth - base_depth, c.depth_lo, c.depth_hi) * self._gate(z_depth)
        enough = ramp(x["root_intents"], c.min_roots / 2.0, c.min_roots)
        raw = np.maximum(s_fan, s_depth) * enough
        evidence = {
            "fanout": fan,
            "fanout_baseline": base_fan,
            "fanout_z": z_fan,
            "depth_mean": depth,
            "depth_baseline": base_depth,
        }
        return raw, evidence, {"fanout": fan, "depth": depth}


def plan(
    ctx: EvalContext, config: GovernorConfig, row: int, key: Key, age_ms: int
) -> list[Planned]:
    """``defer`` {T, E if one endpoint carries most of T's sub-requests, min_depth=1,
    min_priority=p}."""
    cfg = config.actions
    tenant = key[2]
    growth = float(ctx.features["fanout"][row]) / max(
        float(ctx.scored["fanout"].evidence["fanout_baseline"][row]), 1.0
    )
    excess = min(cfg.max_excess, max(0.0, 1.0 - 1.0 / growth)) if growth > 0 else 0.0
    p, share = priority_floor(
        ctx.sums[row, PRIO0 : PRIO0 + N_PRIORITIES], excess, cfg.protected_priorities
    )
    if share <= 0:
        return []
    endpoint = None
    pair_rows = ctx.pairs_of_tenant.get(tenant, [])
    subs = ctx.features["sub_requests"]
    total = float(subs[row])
    if pair_rows and total > 0:
        top = max(pair_rows, key=lambda r: (float(subs[r]), ctx.keys[r]))
        if float(subs[top]) / total >= cfg.localize_share:
            endpoint = ctx.keys[top][1]
    scope = Scope(endpoint=endpoint, tenant=tenant, min_depth=1, min_priority=p)
    return [
        Planned(
            "defer",
            scope,
            Action("defer", hold_ms=cfg.fanout_hold_ms, jitter_ms=cfg.fanout_jitter_ms),
        )
    ]


RULE = Rule(Fanout, "fanout", KIND_TENANT, plan, guarded=True)
