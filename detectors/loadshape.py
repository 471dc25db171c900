"""Univariate load-shape scorer: (timestamp_ms, value) series -> anomaly scores in [0, 1].

For each point, in order: a level z-score of the value against an EW mean/variance baseline,
and a trend z-score of the step change against an EW baseline of step changes. Score =
max(ramp(|z_level|, z_lo, z_hi), ramp(z_trend, z_lo, z_hi)) (a rising ramp counts; a falling one
shows in the level). The baselines learn only from points scoring below ``learn_below``
(protected), and nothing scores during the first ``warmup`` points. Timestamps order the series
but the model is per point: resample irregular series first if spacing matters.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np

from detectors.baseline import Ewma, alpha_for_half_life
from detectors.errors import ConfigError
from detectors.layout import F64, I64
from detectors.scores.base import ramp


@dataclass(frozen=True, slots=True)
class LoadShapeConfig:
    half_life: float = 50.0  # points
    warmup: int = 20
    learn_below: float = 0.3
    z_lo: float = 3.0
    z_hi: float = 6.0
    rel_floor: float = 0.01  # std floor, relative to |mean| (flat series do not divide by 0)

    def __post_init__(self) -> None:
        if not self.half_life > 0:
            raise ConfigError("LoadShapeConfig.half_life must be > 0")
        if self.warmup < 1:
            raise ConfigError("LoadShapeConfig.warmup must be >= 1")
        if not 0 < self.learn_below <= 1:
            raise ConfigError("LoadShapeConfig.learn_below must be in (0, 1]")
        if not self.z_hi > self.z_lo >= 0:
            raise ConfigError("LoadShapeConfig.z_hi must be > z_lo >= 0")


class LoadShapeScorer:
    def __init__(self, config: LoadShapeConfig | None = None) -> None:
        self.config = config if config is not None else LoadShapeConfig()
        a = alpha_for_half_life(self.config.half_life)
        self._level = Ewma(a)
        self._step = Ewma(a)
        self._level.grow(1)
        self._step.grow(1)
        self._last: float | None = None

    def score_one(self, ts_ms: int, value: float) -> float:
        """Score one point, then learn from it unless it is anomalous."""
        del ts_ms  # ordering only
        c = self.config
        x = np.array([float(value)])
        lvl, stp = self._level, self._step
        floor = c.rel_floor * max(abs(float(lvl.mean[0])), 1e-9)
        z_level = (x - lvl.mean) / lvl.std(floor)
        step = x - (self._last if self._last is not None else x)
        z_trend = (step - stp.mean) / stp.std(floor)
        raw = float(
            np.maximum(ramp(np.abs(z_level), c.z_lo, c.z_hi), ramp(z_trend, c.z_lo, c.z_hi))[0]
        )
        ready = int(lvl.n[0]) >= c.warmup
        score = raw if ready else 0.0
        learn = np.array([not ready or raw < c.learn_below])
        lvl.update(x, learn)
        if self._last is not None:
            stp.update(step, learn)
        self._last = float(value)
        return score

    def update_many(self, ts_ms: I64, values: F64) -> F64:
        """Score a series in order (equals calling ``score_one`` per point)."""
        return np.array(
            [
                self.score_one(int(t), float(v))
                for t, v in zip(ts_ms.tolist(), values.tolist(), strict=True)
            ]
        )

    def snapshot(self) -> bytes:
        return pickle.dumps((self.config, self._level, self._step, self._last))

    @classmethod
    def restore(cls, data: bytes) -> LoadShapeScorer:
        config, level, step, last = pickle.loads(data)
        s = cls(config)
        s._level, s._step, s._last = level, step, last
        return s


def score_series(ts_ms: I64, values: F64, config: LoadShapeConfig | None = None) -> F64:
    return LoadShapeScorer(config).update_many(ts_ms, values)
