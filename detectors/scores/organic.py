"""Organic growth (a capacity signal, and the guard against mistaking it for interference).

Score = ramp(intent rate / baseline, grow_lo, grow_hi) x normal(amplification)
x normal(fan-out) x stable(tenant mix), where normal(r) = 1 - ramp(r / baseline, ab_lo, ab_hi)
and stable = 1 - ramp(tenant_mix_shift, mix_lo, mix_hi) (0 on keys without a mix). More intents
with the usual ratios, spread over tenants as usual, is organic. The governor suppresses new
retry-storm, contention and fan-out directives on a key whose organic score is high.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from detectors.layout import F64, KIND_ENDPOINT, KIND_TENANT
from detectors.rule import Rule
from detectors.scores.base import Detector, DetectorConfig, ramp


@dataclass(frozen=True, slots=True)
class OrganicConfig(DetectorConfig):
    grow_lo: float = 1.25
    grow_hi: float = 1.6
    ab_lo: float = 1.15
    ab_hi: float = 1.4
    mix_lo: float = 0.15
    mix_hi: float = 0.3
    rate_floor: float = 0.05  # std floor of log intent rate


class OrganicGrowth(Detector[OrganicConfig]):
    name = "organic_growth"
    inputs = ("intent_rate_per_s", "amplification", "fanout", "tenant_mix_shift")
    baselines = ("log_intent_rate", "amplification", "fanout")
    config_type = OrganicConfig

    def _score(self, x: Mapping[str, F64]) -> tuple[F64, dict[str, F64], dict[str, F64]]:
        c = self.config
        log_rate = np.log(np.maximum(x["intent_rate_per_s"], 0.01))
        growth = np.exp(log_rate - self.state["log_intent_rate"].mean)
        z = self._z("log_intent_rate", log_rate, c.rate_floor)
        amp_ratio = x["amplification"] / np.maximum(self.state["amplification"].mean, 1.0)
        fan_ratio = x["fanout"] / np.maximum(self.state["fanout"].mean, 1.0)
        normal = (1.0 - ramp(amp_ratio, c.ab_lo, c.ab_hi)) * (
            1.0 - ramp(fan_ratio, c.ab_lo, c.ab_hi)
        )
        stable = 1.0 - ramp(x["tenant_mix_shift"], c.mix_lo, c.mix_hi)
        raw = ramp(growth, c.grow_lo, c.grow_hi) * self._gate(z) * normal * stable
        evidence = {
            "intent_growth": growth,
            "intent_rate_per_s": x["intent_rate_per_s"],
            "amplification_ratio": amp_ratio,
            "fanout_ratio": fan_ratio,
            "tenant_mix_shift": x["tenant_mix_shift"],
        }
        return (
            raw,
            evidence,
            {
                "log_intent_rate": log_rate,
                "amplification": x["amplification"],
                "fanout": x["fanout"],
            },
        )


# informs the others (the organic guard) and the capacity planners; never acts itself
RULE = Rule(OrganicGrowth, "organic", KIND_ENDPOINT, recorded=(KIND_ENDPOINT, KIND_TENANT))
