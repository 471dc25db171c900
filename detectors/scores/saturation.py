"""Queue saturation ahead: latency rising above normal while throughput does not follow.

Latency is judged on two windows, each against its own learned baseline and noise: the last
``latency_fast_ms`` (300 ms: quick, for busy endpoints) and the detection horizon (1 s: for quiet
ones, where 300 ms holds too few completions to prove anything). Per window,
``level = ramp(latency / baseline, lat_lo, lat_hi) x z-gate(log latency) x evidence-gate
x load-gate``, and

score = max(level_fast, level_short) x (base + w_trend x trend + w_flat x flat), where

- ``trend`` = ramp(latency now / latency over the mid horizon, 1, 1 + trend_hi): still rising,
  i.e. *ahead* of the cliff rather than a settled new level;
- ``flat`` = 1 - ramp(throughput / baseline, 1, 1 + flat_hi): completions are not growing, so the
  extra in-flight work (Little's law: in-flight = throughput x latency) is queueing.

Load gate: a queue is *more work* in the system, not only slower completions. Events are
stamped at completion, so when traffic stops (a batch job ends, a fleet goes quiet) the last
completions are the long-latency stragglers: the mean latency of the windows rises while their
throughput falls, which alone reads like a queue. Little's law tells the two apart. The work in
the system is about completion rate x latency, so per window

    load_ratio = completion_ratio x latency_ratio,
    completion_ratio = completions per second over the fast window / learned throughput,

and the level counts only ``ramp(load_ratio, load_lo, load_hi)`` of itself. The completion rate
is always the fast window's, the latest one: the 1 s window still holds the completions from
before a stop. Why it separates the two:

- traffic stopping or slowing: every completion in a window comes from a request that started no
  later than in steady traffic, so the latency-ms completing there (completion rate x mean
  latency) can only shrink: ``load_ratio <= 1`` in expectation whatever the latency
  distribution, while its latency ratio keeps rising;
- a queue under load: completions continue at the service's capacity (near or above the learned
  throughput) while latency rises, so ``load_ratio ~ latency_ratio >= lat_lo``; a service
  slowing down under the same arrivals completes less but its latency grows faster than its
  throughput falls (arrivals keep coming), so the work still rises, and timeouts count as
  completions, so a metastable collapse (every client timing out) keeps the gate open.

Hence ``load_lo = 1``: no more work than normal is no queue; it is the bound above, not a fitted
value (0.9 let stops through again). ``load_hi = 1.25 = lat_lo``: a queue at normal throughput
passes fully as soon as its latency starts to count, so busy endpoints lose no detection time.
The learned throughput counts successes only, so at a normal error fraction ``e`` the normal
``load_ratio`` is ``1 / (1 - e)``, slightly above 1: on the side of firing. A latency rise with
unchanged work (the same work completing more slowly, e.g. a fixed number of closed-loop agents
on a slower service) is no queue building either. A gate on the completion rate alone (above a
fixed floor) mutes fewer stops (a heavy latency tail completes slowly, so the rate falls
slowly), and it would mute for good a service whose capacity fell below the floor. Left: the
windows' noise. At a quiet endpoint (~50-80 completions/s, ~20 in 300 ms) both ratios can be
high by chance at once, so a stop still fires there now and then, like steady traffic does at
such rates.

Errors are not an input: it fires on latency before the error cliff.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from detectors.errors import ConfigError
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
    load_lo: float = 1.0  # work in the system (load_ratio) not above normal: not a queue
    load_hi: float = 1.25  # ... 25 % above normal (= lat_lo) counts fully

    def __post_init__(self) -> None:
        DetectorConfig.__post_init__(self)
        if not self.load_hi > self.load_lo:
            raise ConfigError("SaturationConfig.load_hi must be > load_lo")


class Saturation(Detector[SaturationConfig]):
    name = "saturation"
    inputs = (
        "latency_mean_fast_ms",
        "latency_count_fast",
        "completion_rate_fast_per_s",
        "latency_mean_ms",
        "latency_count",
        "latency_mean_mid_ms",
        "throughput_per_s",
        "in_flight",
    )
    baselines = ("log_latency_fast", "log_latency", "log_throughput")
    config_type = SaturationConfig

    def _level(
        self, lat_ms: F64, count: F64, completion_ratio: F64, base: str
    ) -> tuple[F64, F64, F64, F64, F64]:
        """(level, latency ratio, latency z, log latency, load ratio) of one window."""
        c = self.config
        log_lat = np.log(np.maximum(lat_ms, 0.1))
        lat_ratio = np.exp(log_lat - self.state[base].mean)
        z = self._z(base, log_lat, c.log_floor)
        enough = ramp(count, c.min_completions / 2.0, c.min_completions)
        load_ratio = completion_ratio * lat_ratio
        load = ramp(load_ratio, c.load_lo, c.load_hi)
        level = ramp(lat_ratio, c.lat_lo, c.lat_hi) * self._gate(z) * enough * load
        return level, lat_ratio, z, log_lat, load_ratio

    def _score(self, x: Mapping[str, F64]) -> tuple[F64, dict[str, F64], dict[str, F64]]:
        c = self.config
        log_thr_base = self.state["log_throughput"].mean
        completion_ratio = x["completion_rate_fast_per_s"] * np.exp(-log_thr_base)
        fast, r_fast, z_fast, log_fast, load_fast = self._level(
            x["latency_mean_fast_ms"], x["latency_count_fast"], completion_ratio, "log_latency_fast"
        )
        short, r_short, z_short, log_short, load_short = self._level(
            x["latency_mean_ms"], x["latency_count"], completion_ratio, "log_latency"
        )
        log_thr = np.log(np.maximum(x["throughput_per_s"], 0.1))
        thr_ratio = np.exp(log_thr - log_thr_base)
        use_fast = fast >= short
        now = np.where(use_fast, x["latency_mean_fast_ms"], x["latency_mean_ms"])
        trend = ramp(now / np.maximum(x["latency_mean_mid_ms"], 0.1), 1.0, 1.0 + c.trend_hi)
        flat = 1.0 - ramp(thr_ratio, 1.0, 1.0 + c.flat_hi)
        shape = (1.0 - c.w_trend - c.w_flat) + c.w_trend * trend + c.w_flat * flat
        raw = np.maximum(fast, short) * shape
        evidence = {
            "latency_mean_ms": now,
            "latency_baseline_ms": np.exp(self.state["log_latency"].mean),
            "latency_ratio": np.where(use_fast, r_fast, r_short),
            "latency_z": np.where(use_fast, z_fast, z_short),
            "latency_trend": trend,
            "throughput_ratio": thr_ratio,
            "completion_ratio": completion_ratio,
            "load_ratio": np.where(use_fast, load_fast, load_short),
            "in_flight": x["in_flight"],
        }
        learn = {"log_latency_fast": log_fast, "log_latency": log_short, "log_throughput": log_thr}
        return raw, evidence, learn
