"""The detector template: one tiny API shared by every detector.

``update_many(features)`` scores every key (one value per key in each feature array) against the
baselines learned so far, then learns from the keys that are (a) active (``attempts > 0``), (b)
mature (their short window is fully covered) and (c) not anomalous (score below
``learn_below``: the baseline is protected from the anomaly it scores). Keys that are not ready
score 0: by default inactive keys and those that have learned fewer than ``warmup`` samples
(``_ready`` and ``_may_learn`` may be overridden). High score = anomalous, always in [0, 1].

A subclass declares ``name``, ``inputs`` (the features it reads), ``baselines`` (the features it
learns) and implements ``_score``. State is a set of ``Ewma`` arrays aligned with the keys;
``grow`` / ``keep`` follow the window store's rows.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from detectors.baseline import Ewma, alpha_for_half_life
from detectors.errors import ConfigError
from detectors.layout import F64

# the ufunc behind ``np.clip`` (same results, without its Python-level dispatch)
try:
    _clip: Callable[..., Any] = importlib.import_module("numpy._core.umath").clip
except (ImportError, AttributeError):  # pragma: no cover
    _clip = np.clip


def ramp(x: F64, lo: float, hi: float) -> F64:
    """0 below ``lo``, 1 above ``hi``, linear in between."""
    return np.asarray(_clip((x - lo) / (hi - lo), 0.0, 1.0), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Common knobs. Evaluations happen once per bucket (default 100 ms of event time).

    - ``half_life_evals``: baseline memory; 300 evaluations = 30 s at 100 ms buckets, long enough
      to smooth seconds-scale noise, short enough to follow a changing day.
    - ``warmup``: learned samples before a key may score (50 = 5 s).
    - ``learn_below``: protection; rows scoring at/above this are not learned.
    - ``z_lo``/``z_hi``: statistical gate: the deviation must be ``z_lo``..``z_hi`` learned standard
      deviations before the score passes (filters Poisson noise at low rates).
    """

    half_life_evals: float = 300.0
    warmup: int = 50
    learn_below: float = 0.2
    z_lo: float = 2.0
    z_hi: float = 4.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, int | float) and not v >= 0:
                raise ConfigError(f"{type(self).__name__}.{f.name} must be >= 0, got {v}")
        if not self.half_life_evals > 0:
            raise ConfigError(f"{type(self).__name__}.half_life_evals must be > 0")
        if not 0 < self.learn_below <= 1:
            raise ConfigError(f"{type(self).__name__}.learn_below must be in (0, 1]")
        if not self.z_hi > self.z_lo:
            raise ConfigError(f"{type(self).__name__}.z_hi must be > z_lo")


@dataclass(frozen=True, slots=True)
class Scored:
    """Scores of every key and the evidence arrays behind them (name -> one value per key)."""

    score: F64
    evidence: dict[str, F64]

    def evidence_at(self, row: int) -> dict[str, float | int | str]:
        return {k: round(float(v[row]), 6) for k, v in self.evidence.items()}


C = TypeVar("C", bound=DetectorConfig)


class Detector(ABC, Generic[C]):
    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]
    baselines: ClassVar[tuple[str, ...]]
    config_type: ClassVar[type[DetectorConfig]]
    # False for detectors of physical quantities (no learned normal gates them): they score
    # from their first mature evaluation, so a cold start inside an incident is seen
    needs_warmup: ClassVar[bool] = True
    # True for detectors that score from physical priors until ``warmup`` samples are learned
    # (with ``needs_warmup`` False): warm-up then changes their scores, never silences them
    blends_priors: ClassVar[bool] = False

    def __init__(self, config: C | None = None) -> None:
        self.config: C = config if config is not None else self.config_type()  # type: ignore[assignment]
        alpha = alpha_for_half_life(self.config.half_life_evals)
        self.state: dict[str, Ewma] = {b: Ewma(alpha) for b in self.baselines}

    @property
    def n_keys(self) -> int:
        return len(next(iter(self.state.values())))

    @property
    def learned(self) -> np.ndarray:
        return next(iter(self.state.values())).n

    def grow(self, k: int) -> None:
        for e in self.state.values():
            e.grow(k)

    def keep(self, mask: np.ndarray) -> None:
        for e in self.state.values():
            e.keep(mask)

    def update_many(self, x: Mapping[str, F64]) -> Scored:
        """Score every key, then learn (protected). Arrays all have one value per key."""
        missing = [n for n in (*self.inputs, "attempts", "mature") if n not in x]
        if missing:
            raise KeyError(f"{self.name}: missing features {missing}")
        k = int(x["attempts"].shape[0])
        self.grow(k)
        raw, evidence, values = self._score(x)
        raw = _clip(raw, 0.0, 1.0)
        raw[np.isnan(raw)] = 0.0  # np.nan_to_num: no infinities are left after the clip
        active = (x["attempts"] > 0) & (x["mature"] > 0)
        ready = self._ready(x, k, active)
        score = np.where(ready, raw, 0.0)
        learn = active & (~ready | (raw < self.config.learn_below))
        may_learn = self._may_learn(x, k)
        if may_learn is not None:
            learn &= may_learn
        for b in self.baselines:
            self.state[b].update(values[b], learn)
        return Scored(score, evidence)

    def _ready(self, x: Mapping[str, F64], k: int, active: np.ndarray) -> np.ndarray:
        """Keys that score at this evaluation (bool per key): by default the ``active`` keys
        that have learned ``warmup`` samples. A detector whose keys can borrow mature evidence
        from a related key (contention: a new pair from its endpoint) may widen this. Ready keys
        learn only while they score below ``learn_below``; active keys that are not ready learn
        unprotected."""
        if not self.needs_warmup:
            return active
        ready: np.ndarray = active & (self.learned[:k] >= self.config.warmup)
        return ready

    def _may_learn(self, x: Mapping[str, F64], k: int) -> np.ndarray | None:
        """Keys that may learn at this evaluation at all (bool per key; None: no restriction,
        the default), on top of the rule above."""
        return None

    @abstractmethod
    def _score(self, x: Mapping[str, F64]) -> tuple[F64, dict[str, F64], dict[str, F64]]:
        """(raw scores, evidence arrays, values to learn per baseline name)."""

    def _z(self, base: str, value: F64, floor: float) -> F64:
        e = self.state[base]
        return (value - e.mean) / e.std(floor)

    def _gate(self, z: F64) -> F64:
        return ramp(z, self.config.z_lo, self.config.z_hi)

