"""Queue saturation ahead: latency rising above normal while throughput does not follow.

Latency is judged on two windows, each against its own learned baseline and noise: the last
``latency_fast_ms`` (300 ms: quick, for busy endpoints) and the detection horizon (1 s: for quiet
ones, where 300 ms holds too few completions to prove anything). Per window,
``level = ramp(latency / baseline, lat_lo, lat_hi) x z-gate(log latency) x evidence-gate``, and

score = max(level_fast, level_short) x (base + w_trend x trend + w_flat x flat), where

- ``trend`` = ramp(latency now / latency over the mid horizon, 1, 1 + trend_hi): still rising,
  i.e. *ahead* of the cliff rather than a settled new level;
- ``flat`` = 1 - ramp(throughput / baseline, 1, 1 + flat_hi): completions are not growing, so the
  extra in-flight work (Little's law: in-flight = throughput x latency) is queueing.

Errors are not an input: it fires on latency before the error cliff.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from detectors.layout import F64
from detectors.scores.base import Detector, DetectorConfig, ramp


@dataclass(frozen=True, slots=True)
class SaturationConfig(DetectorConfig):
    lat_lo: float = 1.25  # latency 25 % above normal starts to count
    lat_hi: float = 2.0  # ... doubled counts fully
    trend_hi: float = 0.3
    flat_hi: float = 0.5
    w_trend: float = 0.35
    w_flat: float = 0.25
    log_floor: float = 0.05  # std floor of log latency
    min_completions: float = 10.0  # per window, for the evidence gate


class Saturation(Detector[SaturationConfig]):
    name = "saturation"
    inputs = (
        "latency_mean_fast_ms",
        "latency_count_fast",
        "latency_mean_ms",
        "latency_count",
        "latency_mean_mid_ms",
        "throughput_per_s",
        "in_flight",
    )
    baselines = ("log_latency_fast", "log_latency", "log_throughput")
    config_type = SaturationConfig

    def _level(self, lat_ms: F64, count: F64, base: str) -> tuple[F64, F64, F64, F64]:
        c = self.config
        log_lat = np.log(np.maximum(lat_ms, 0.1))
        lat_ratio = np.exp(log_lat - self.state[base].mean)
        z = self._z(base, log_lat, c.log_floor)
        enough = ramp(count, c.min_completions / 2.0, c.min_completions)
        return ramp(lat_ratio, c.lat_lo, c.lat_hi) * self._gate(z) * enough, lat_ratio, z, log_lat

    def _score(self, x: Mapping[str, F64]) -> tuple[F64, dict[str, F64], dict[str, F64]]:
        c = self.config
        fast, r_fast, z_fast, log_fast = self._level(
            x["latency_mean_fast_ms"], x["latency_count_fast"], "log_latency_fast"
        )
        short, r_short, z_short, log_short = self._level(
            x["latency_mean_ms"], x["latency_count"], "log_latency"
        )
        log_thr = np.log(np.maximum(x["throughput_per_s"], 0.1))
        thr_ratio = np.exp(log_thr - self.state["log_throughput"].mean)
        now = np.where(fast >= short, x["latency_mean_fast_ms"], x["latency_mean_ms"])
        trend = ramp(now / np.maximum(x["latency_mean_mid_ms"], 0.1), 1.0, 1.0 + c.trend_hi)
        flat = 1.0 - ramp(thr_ratio, 1.0, 1.0 + c.flat_hi)
        shape = (1.0 - c.w_trend - c.w_flat) + c.w_trend * trend + c.w_flat * flat
        raw = np.maximum(fast, short) * shape
        evidence = {
            "latency_mean_ms": now,
            "latency_baseline_ms": np.exp(self.state["log_latency"].mean),
            "latency_ratio": np.where(fast >= short, r_fast, r_short),
            "latency_z": np.where(fast >= short, z_fast, z_short),
            "latency_trend": trend,
            "throughput_ratio": thr_ratio,
            "in_flight": x["in_flight"],
        }
        learn = {"log_latency_fast": log_fast, "log_latency": log_short, "log_throughput": log_thr}
        return raw, evidence, learn
