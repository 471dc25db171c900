"""Univariate load-shape scorer: (timestamp_ms, value) series -> anomaly scores in [0, 1].

For each point, in order: a level z-score of the value against an EW mean/variance baseline,
and a trend z-score of the step change against an EW baseline of step changes. Score =
max(ramp(|z_level|, z_lo, z_hi), ramp(z_trend, z_lo, z_hi)) (a rising ramp counts; a falling one
shows in the level). The baselines learn only from points scoring below ``learn_below``
(protected), and nothing scores during the first ``warmup`` points. Timestamps order the series
but the model is per point: resample irregular series first if spacing matters.

Re-learning (protection is not permanent). Protection alone never learns a new level: once a
series moves for good, every later point scores high, so nothing is learned and the score stays
at 1.0 to the end. So the scorer also counts the current anomalous run: each anomalous point
(one the baselines refuse to learn, score >= ``learn_below``) on the same side of the level
baseline adds one, an anomalous point on the other side restarts the run at one, and each normal
point takes one away (down to zero). When the run reaches ``relearn_points``, the shift is the new
normal: both baselines are re-seeded from the last ``relearn_points`` values (mean and sample
variance of the values, and of their steps), and the run restarts. The bound: after a shift in
which every point is anomalous, exactly ``relearn_points`` points score high (from the onset)
and the next one is scored against the new level; if only a share q > 1/2 of the shifted points
is anomalous (noisy counts), adoption takes about ``relearn_points / (2q - 1)`` points. A spike
shorter than ``relearn_points`` is never adopted: it scores high for its whole length and the
baseline does not learn it. The score itself is not damped, so flags are sparse runs that start
at the onsets. The default, 30 points, is longer than ``warmup`` (a re-seeded baseline rests on
more points than the first one did, relative error of a 30-point variance about 26 %), shorter
than ``half_life`` (a new level is adopted faster than the old one would fade), and at one
point per second protects spikes and bursts of up to half a minute. Two spikes closer together
than their combined excess over ``relearn_points`` count as one run and are adopted; the
baseline then carries their variance and forgets it with ``half_life``. ``relearn_points = 0``
restores permanent protection.
"""

from __future__ import annotations

from collections import deque
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
    relearn_points: int = 30  # points: a run this long is the new normal (0 = protect forever)

    def __post_init__(self) -> None:
        if not self.half_life > 0:
            raise ConfigError("LoadShapeConfig.half_life must be > 0")
        if self.warmup < 1:
            raise ConfigError("LoadShapeConfig.warmup must be >= 1")
        if not 0 < self.learn_below <= 1:
            raise ConfigError("LoadShapeConfig.learn_below must be in (0, 1]")
        if not self.z_hi > self.z_lo >= 0:
            raise ConfigError("LoadShapeConfig.z_hi must be > z_lo >= 0")
        if self.relearn_points < 0 or self.relearn_points == 1:
            raise ConfigError("LoadShapeConfig.relearn_points must be 0 (off) or >= 2")


class LoadShapeScorer:
    def __init__(self, config: LoadShapeConfig | None = None) -> None:
        self.config = config if config is not None else LoadShapeConfig()
        a = alpha_for_half_life(self.config.half_life)
        self._level = Ewma(a)
        self._step = Ewma(a)
        self._level.grow(1)
        self._step.grow(1)
        self._last: float | None = None
        self._recent: deque[float] = deque(maxlen=self.config.relearn_points)
        self._run = 0  # net anomalous points in the current direction (see the module docstring)
        self._run_sign = 0  # +1 above the baseline, -1 below, 0 no run

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
        self._recent.append(float(value))
        if c.relearn_points and ready and self._count_run(bool(learn[0]), float(z_level[0]) >= 0):
            self._adopt()
        else:
            lvl.update(x, learn)
            if self._last is not None:
                stp.update(step, learn)
        self._last = float(value)
        return score

    def _count_run(self, normal: bool, above: bool) -> bool:
        """Count the anomalous run; True when it is long enough to adopt the recent points."""
        if normal:
            self._run = max(self._run - 1, 0)
            if self._run == 0:
                self._run_sign = 0
            return False
        sign = 1 if above else -1
        if sign == self._run_sign:
            self._run += 1
        else:
            self._run, self._run_sign = 1, sign
        return self._run >= self.config.relearn_points

    def _adopt(self) -> None:
        """Re-seed both baselines from the last ``relearn_points`` values: the new normal."""
        r = np.array(self._recent)
        d = np.diff(r)
        for b, xs in ((self._level, r), (self._step, d)):
            b.mean = np.array([float(xs.mean())])
            b.var = np.array([float(xs.var(ddof=1)) if len(xs) > 1 else 0.0])
            b.n = np.maximum(b.n, len(xs))
        self._run, self._run_sign = 0, 0

    def update_many(self, ts_ms: I64, values: F64) -> F64:
        """Score a series in order (equals calling ``score_one`` per point)."""
        return np.array(
            [
                self.score_one(int(t), float(v))
                for t, v in zip(ts_ms.tolist(), values.tolist(), strict=True)
            ]
        )


def score_series(ts_ms: I64, values: F64, config: LoadShapeConfig | None = None) -> F64:
    return LoadShapeScorer(config).update_many(ts_ms, values)
