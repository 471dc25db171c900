"""Overload: admitted work that will not (or no longer does) finish before its clients give up.

Waiting in a queue is not waste; work that finishes after its client gave up is. The score needs
no learned normal (it is physical, from ``detectors.capacity``), on endpoint keys:

score = enough x max(nobody, risk, binding), where

- ``nobody`` = ramp(timeout_fraction, nobody_lo, nobody_hi) x max(queued, ramp(timeout_fraction,
  gone_lo, gone_hi)): attempts whose client timed out while the service still holds them (work
  for nobody), counted when a queue stands (the timeouts come from waiting), or when most
  attempts time out (the service is too slow for its clients, queue or not). Timeouts in the
  tail of a heavy-tailed service without a queue are not overload;
- ``risk`` = ramp((queue wait + no-load latency) / patience, risk_lo, risk_hi) x queued: what a
  request arriving now will take is a large share of what clients wait (their observed timeout):
  the queue is about to turn into work for nobody (no term while no client has timed out);
- ``growing`` = queued x ramp(arrival_ratio, grow_lo, grow_hi): arrivals well above capacity, read
  from the queue's growth: a queue that will outgrow any patience if nothing changes. Acting on
  it paces the excess at the gateways (see ``actions.overload``) instead of queueing it in the
  service, where every client's clock runs and the most important requests wait behind the rest;
- ``binding`` = binding_weight x ramp(throttled share, bind_lo, bind_hi): while a throttle paces or
  rejects attempts here, demand is still above what is admitted. Its weight keeps an episode
  (above the policy's ``exit``) but cannot start one (below ``enter``);
- ``enough``: an evidence gate on attempts that ran.

The learned baseline (the timeout fraction's normal) is evidence only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from detectors.errors import ConfigError
from detectors.features import ratio
from detectors.layout import F64
from detectors.scores.base import Detector, DetectorConfig, ramp


@dataclass(frozen=True, slots=True)
class OverloadConfig(DetectorConfig):
    """Score knobs (shares of attempts; ratios of latency to patience) and the admission law's
    (``detectors.laws.admission_rate``): ``target_wait_share`` of the no-load latency (at least
    ``target_wait_min_ms``) is the standing queue kept so that no slot idles, ``horizon_ms`` the
    time in which a deviation from it is corrected; paced requests wait at a gateway at most
    ``hold_share`` of the clients' patience minus the answer time at the target wait, at most
    ``hold_max_ms`` (and
    that long while no client has timed out yet: the excess then waits at the gateway about as
    long as it would have waited in the service's queue, which its clients evidently accept, but
    a held request whose client gave up is never sent)."""

    nobody_lo: float = 0.02
    nobody_hi: float = 0.10
    gone_lo: float = 0.3
    gone_hi: float = 0.5
    risk_lo: float = 0.4
    risk_hi: float = 0.7
    grow_lo: float = 1.5
    grow_hi: float = 2.5
    bind_lo: float = 0.02
    bind_hi: float = 0.10
    binding_weight: float = 0.5
    min_ran: float = 10.0
    target_wait_share: float = 0.25
    target_wait_min_ms: int = 20
    horizon_ms: int = 2_000
    hold_share: float = 0.5
    hold_max_ms: int = 10_000

    def __post_init__(self) -> None:
        DetectorConfig.__post_init__(self)
        for lo, hi in (("nobody_lo", "nobody_hi"), ("gone_lo", "gone_hi"), ("risk_lo", "risk_hi"),
                       ("grow_lo", "grow_hi"),
                       ("bind_lo", "bind_hi")):
            if not getattr(self, hi) > getattr(self, lo):
                raise ConfigError(f"OverloadConfig.{hi} must be > {lo}")
        if not 0 < self.binding_weight < 1:
            raise ConfigError("OverloadConfig.binding_weight must be in (0, 1)")
        if self.horizon_ms <= 0:
            raise ConfigError("OverloadConfig.horizon_ms must be > 0")
        if not 0 < self.hold_share <= 1:
            raise ConfigError("OverloadConfig.hold_share must be in (0, 1]")


class Overload(Detector[OverloadConfig]):
    name = "overload"
    inputs = (
        "timeout_fraction",
        "queued",
        "ok_p50_ms",
        "patience_ms",
        "throttled",
        "rejected",
        "capacity_per_s",
        "queue_wait_ms",
        "latency_floor_ms",
        "utilization",
        "arrival_ratio",
        "observed_wait_ms",
    )
    baselines = ("timeout_fraction",)
    config_type = OverloadConfig
    needs_warmup = False  # physical signals: a cold start inside an incident scores at once

    def _score(self, x: Mapping[str, F64]) -> tuple[F64, dict[str, F64], dict[str, F64]]:
        c = self.config
        tf = x["timeout_fraction"]
        queued = x["queued"]
        gone = ramp(tf, c.gone_lo, c.gone_hi)
        nobody = ramp(tf, c.nobody_lo, c.nobody_hi) * np.maximum(queued, gone)
        patience = x["patience_ms"]
        to_patience = ratio(x["observed_wait_ms"] + x["latency_floor_ms"], patience)
        risk = ramp(to_patience, c.risk_lo, c.risk_hi) * queued
        throttled_share = ratio(x["throttled"], x["attempts"])
        binding = c.binding_weight * ramp(throttled_share, c.bind_lo, c.bind_hi)
        ran = x["attempts"] - x["rejected"]
        enough = ramp(ran, c.min_ran / 2.0, c.min_ran)
        long_queue = ramp(ratio(x["observed_wait_ms"], x["latency_floor_ms"]), 1.0, 2.0)
        growing = queued * long_queue * ramp(x["arrival_ratio"], c.grow_lo, c.grow_hi)
        raw = np.maximum(np.maximum(nobody, risk), np.maximum(growing, binding)) * enough
        evidence = {
            "timeout_fraction": tf,
            "timeout_fraction_baseline": self.state["timeout_fraction"].mean,
            "queue_wait_ms": x["queue_wait_ms"],
            "latency_floor_ms": x["latency_floor_ms"],
            "ok_p50_ms": x["ok_p50_ms"],
            "patience_ms": patience,
            "capacity_per_s": x["capacity_per_s"],
            "utilization": x["utilization"],
            "arrival_ratio": x["arrival_ratio"],
            "throttled_share": throttled_share,
        }
        return raw, evidence, {"timeout_fraction": tf}
