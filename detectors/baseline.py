"""Learned baselines, vectorized over keys: exponentially weighted mean and variance.

``update(x, learn)`` moves only the rows where ``learn`` is true, so a detector can refuse to learn
from what it is scoring as anomalous (river's ``protect_anomaly_detector``). The first samples
use a running mean (weight ``1/n``) until it is smaller than ``alpha``, so a fresh key does not
carry its first noisy value for a whole half-life.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from detectors.errors import ConfigError
from detectors.layout import F64, I64


def alpha_for_half_life(half_life: float) -> float:
    if not half_life > 0:
        raise ConfigError(f"half_life must be > 0, got {half_life}")
    return 1.0 - math.pow(0.5, 1.0 / half_life)


@dataclass(slots=True)
class Ewma:
    """EW mean/variance per key. ``n`` counts learned samples (for warm-up)."""

    alpha: float
    mean: F64 = field(default_factory=lambda: np.zeros(0))
    var: F64 = field(default_factory=lambda: np.zeros(0))
    n: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return int(self.mean.shape[0])

    def grow(self, k: int) -> None:
        extra = k - len(self)
        if extra > 0:
            self.mean = np.concatenate([self.mean, np.zeros(extra)])
            self.var = np.concatenate([self.var, np.zeros(extra)])
            self.n = np.concatenate([self.n, np.zeros(extra, dtype=np.int64)])

    def keep(self, mask: np.ndarray) -> None:
        self.mean, self.var, self.n = self.mean[mask], self.var[mask], self.n[mask]

    def std(self, floor: float) -> F64:
        return np.sqrt(self.var + floor * floor)

    def update(self, x: F64, learn: np.ndarray) -> None:
        a = np.maximum(self.alpha, 1.0 / (self.n + 1.0))
        d = x - self.mean
        ad = a * d  # a * d * d == (a * d) * d
        new_mean = self.mean + ad
        new_var = (1.0 - a) * (self.var + ad * d)
        self.mean = np.where(learn, new_mean, self.mean)
        self.var = np.where(learn, new_var, self.var)
        self.n = self.n + learn
