"""Overload: admitted work that will not (or no longer does) finish before its clients give up.

Waiting in a queue is not waste; work that finishes after its client gave up is. The score needs
no learned normal (it is physical, from ``detectors.capacity``), on endpoint keys:

score = enough x max(nobody, risk, growing, binding), where

- ``nobody`` = ramp(timeout_fraction, nobody_lo, nobody_hi) x max(queued, ramp(timeout_fraction,
  gone_lo, gone_hi)): attempts whose client timed out while the service still holds them (work
  for nobody), counted when a queue stands (the timeouts come from waiting), or when most
  attempts time out (the service is too slow for its clients, queue or not). Timeouts in the
  tail of a heavy-tailed service without a queue are not overload;
- ``risk`` = ramp((answer time + the wait's growth) / patience, risk_lo, risk_hi) x queued: what a
  request arriving now will take is a large share of what clients wait (their observed timeout):
  the queue is about to turn into work for nobody (no term while no client has timed out);
- ``growing`` = queued x ramp(wait / floor, 1, 2) x ramp(arrival_ratio, grow_lo, grow_hi):
  arrivals above capacity, read from the growth of a queue already longer than the no-load
  latency: a queue that will outgrow any patience if nothing changes. Acting on it paces the
  excess at the gateways (``plan`` below) instead of queueing it in the
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
from typing import TYPE_CHECKING

import numpy as np

from detectors import laws
from detectors.actions import EvalContext, hold_ms, priority_floor, target_wait_ms, throttle
from detectors.errors import ConfigError
from detectors.features import ratio
from detectors.layout import F64, KIND_ENDPOINT, N_PRIORITIES, PRIO0
from detectors.policy import Planned
from detectors.rule import Rule
from detectors.scores.base import Detector, DetectorConfig, ramp
from detectors.windows import Key
from schemas.directive import Scope

if TYPE_CHECKING:
    from detectors.config import GovernorConfig


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
    grow_lo: float = 1.03
    grow_hi: float = 1.1
    bind_lo: float = 0.02
    bind_hi: float = 0.10
    binding_weight: float = 0.5
    min_ran: float = 10.0
    target_wait_share: float = 1.0
    target_wait_min_ms: int = 20
    min_admit_share: float = 0.5
    horizon_ms: int = 2_000
    hold_share: float = 0.9
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
        patience = x["patience_ms"]
        # timeouts are clients giving up only where they outlast the answers (``patience_ms``
        # is 0 otherwise: an upstream's limit, or noise)
        nobody = ramp(tf, c.nobody_lo, c.nobody_hi) * np.maximum(queued, gone) * (patience > 0)
        # what a request arriving now takes: the answer time reported now, plus the wait's growth
        # since those requests arrived
        ahead = x["ok_p50_ms"] + np.maximum(x["queue_wait_ms"] - x["observed_wait_ms"], 0.0)
        to_patience = ratio(ahead, patience)
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


def plan(
    ctx: EvalContext, config: GovernorConfig, row: int, key: Key, age_ms: int
) -> list[Planned]:
    """Admit about the capacity, lowest priorities first (``laws.admission_rate``).

    ``a = capacity x (1 + (target wait - wait) / horizon)`` is what the endpoint may be offered;
    the constrained class is the fewest lowest priorities whose demand covers the excess
    ``1 - capacity / demand`` (any priority: when the most important demand alone exceeds capacity,
    admitting more of it only makes all of it late); it is throttled to what the priorities
    above leave, ``max(0, a - above)``, and paced rather than rejected up to the hold budget
    (a share of the clients' patience), so that a burst waits at the gateway instead of in the
    service's queue, where the client's clock runs."""
    cfg, ocfg = config.actions, config.overload
    f = ctx.features
    cap = float(f["capacity_per_s"][row])
    if cap <= 0:
        return []
    floor = float(f["latency_floor_ms"][row])
    wait = float(f["observed_wait_ms"][row])
    patience = float(f["patience_ms"][row])
    target = target_wait_ms(floor, ocfg)
    # drain within half the clients' patience (the hold cap while no client timed out yet)
    horizon = max(float(ocfg.horizon_ms), 0.5 * patience if patience > 0 else ocfg.hold_max_ms)
    admit = float(laws.admission_rate(np.array([cap]), np.array([wait]), np.array([target]),
                                      horizon)[0])
    # never shut the endpoint: the queue still drains at ``capacity - admit``, and what is
    # admitted keeps the measurements (and the episode's exit) alive
    admit = max(admit, ocfg.min_admit_share * cap)
    # completions report at most the capacity while a queue grows; the arrivals are the
    # capacity times the queue's growth (``laws.arrival_ratio``)
    demand = max(float(f["attempt_rate_per_s"][row]), float(f["arrival_ratio"][row]) * cap)
    excess = min(1.0, max(0.0, 1.0 - cap / demand)) if demand > 0 else 0.0
    # while a throttle paces or rejects attempts here, completions come at the admitted rate and
    # hide the demand above it: where clients give up (patience known: a queue costs work), the
    # lowest class stays constrained until the throttle paces nobody; where none ever timed
    # out, the throttle relaxes and the service's queue takes the excess (waiting is not waste)
    attempts = float(f["attempts"][row])
    if patience > 0 and attempts > 0 and float(f["throttled"][row]) / attempts >= ocfg.bind_lo:
        excess = max(excess, ocfg.bind_lo)
    prio = ctx.sums[row, PRIO0 : PRIO0 + N_PRIORITIES]
    p, share = priority_floor(prio, excess, 0)
    if share <= 0:
        return []
    # the priorities above are counted as they complete (the growth of the queue is the
    # constrained class's: scaling them by it would starve the class)
    per_s = float(f["attempt_rate_per_s"][row]) / max(float(prio.sum()), 1.0)
    while p > 0 and float(prio[:p].sum()) * per_s > admit:
        p -= 1  # the priorities above would overrun what may be admitted: widen the class
    above = float(prio[:p].sum()) * per_s
    rate = round(max(0.0, admit - above), 3)
    hold = hold_ms(f, row, ocfg)
    action = throttle(ctx, cfg, rate, key[1], max_delay_ms=hold)
    evidence: dict[str, float | int | str] = {
        "law": "admit = capacity * (1 + (target_wait - wait) / horizon)",
        "admit_per_s": round(admit, 3),
        "demand_per_s": round(demand, 3),
        "target_wait_ms": round(target, 1),
        "horizon_ms": round(horizon),
        "above_per_s": round(above, 3),
        "max_delay_ms": hold,
    }
    scope = Scope(endpoint=key[1], min_priority=p if p > 0 else None)
    return [Planned(f"admit-p{p}", scope, action, evidence)]


RULE = Rule(Overload, "overload", KIND_ENDPOINT, plan)
