"""Synchronized retry storm: attempts per intent rising above the learned normal, in phase.

Score = ramp(amplification / baseline, 1 + rise_lo, 1 + rise_hi) x z-gate x evidence-gate
x (1 - coherence_weight + coherence_weight x retry_coherence).

Amplification (attempts per first attempt) is the ratio of attempts growth to intents growth, so
organic growth (more intents, same ratio) leaves it flat. Coherence lowers the bar for in-phase
retries (the metastable kind) without being required: with the default weight 0.4, incoherent
retries need a doubling of attempts per intent to reach 0.6, in-phase ones ~1.5x.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from detectors.layout import F64
from detectors.scores.base import Detector, DetectorConfig, ramp


@dataclass(frozen=True, slots=True)
class RetryStormConfig(DetectorConfig):
    rise_lo: float = 0.15  # amplification 15 % above normal starts to count
    rise_hi: float = 0.6  # ... and 60 % above counts fully
    coherence_weight: float = 0.4
    min_retries: float = 8.0  # retries in the window before any score (evidence gate)
    amp_floor: float = 0.05  # std floor of amplification (absolute)


class RetryStorm(Detector[RetryStormConfig]):
    name = "retry_storm"
    inputs = ("amplification", "retry_coherence", "retries")
    baselines = ("amplification",)
    config_type = RetryStormConfig

    def _score(self, x: Mapping[str, F64]) -> tuple[F64, dict[str, F64], dict[str, F64]]:
        c = self.config
        amp = x["amplification"]
        base = np.maximum(self.state["amplification"].mean, 1.0)
        growth = amp / base
        z = self._z("amplification", amp, c.amp_floor)
        coherence = x["retry_coherence"]
        evidence_gate = ramp(x["retries"], c.min_retries / 2.0, c.min_retries)
        phase = 1.0 - c.coherence_weight + c.coherence_weight * coherence
        raw = ramp(growth, 1.0 + c.rise_lo, 1.0 + c.rise_hi) * self._gate(z) * evidence_gate * phase
        evidence = {
            "amplification": amp,
            "amplification_baseline": base,
            "amplification_z": z,
            "retry_coherence": coherence,
            "retries": x["retries"],
        }
        return raw, evidence, {"amplification": amp}
