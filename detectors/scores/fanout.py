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

import numpy as np

from detectors.layout import F64
from detectors.scores.base import Detector, DetectorConfig, ramp


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
