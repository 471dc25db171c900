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

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from detectors import laws
from detectors.actions import EvalContext, gateway_shares
from detectors.errors import ConfigError
from detectors.features import ratio
from detectors.layout import F64, KIND_ENDPOINT
from detectors.policy import Planned
from detectors.rule import Rule
from detectors.scores.base import Detector, DetectorConfig, Scored, ramp
from detectors.windows import Key
from schemas.directive import Action, Scope

if TYPE_CHECKING:
    from detectors.config import GovernorConfig


@dataclass(frozen=True, slots=True)
class OverloadConfig(DetectorConfig):
    """Score knobs (shares of attempts; ratios of latency to patience) and the concurrency cap's
    (``detectors.laws.concurrency_limit``): ``limit_headroom`` above the service's slots;
    requests wait at a gateway for a slot at most ``hold_share`` of the clients' patience, at
    most ``hold_max_ms`` (and that long while no client has timed out yet), then are rejected
    with at least ``retry_after_min_ms``; ``blind_hold_evals``: how long the last reading holds
    while too few attempts complete to read the service. ``target_wait_share`` of the no-load
    latency (at least ``target_wait_min_ms``) is the standing queue the contention rule's paced
    throttle keeps (``detectors.actions.hold_ms``)."""

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
    hold_share: float = 0.9
    hold_max_ms: int = 30_000
    limit_headroom: float = 0.25
    blind_hold_evals: int = 100
    retry_after_min_ms: int = 100

    def __post_init__(self) -> None:
        DetectorConfig.__post_init__(self)
        for lo, hi in (("nobody_lo", "nobody_hi"), ("gone_lo", "gone_hi"), ("risk_lo", "risk_hi"),
                       ("grow_lo", "grow_hi"),
                       ("bind_lo", "bind_hi")):
            if not getattr(self, hi) > getattr(self, lo):
                raise ConfigError(f"OverloadConfig.{hi} must be > {lo}")
        if not 0 < self.binding_weight < 1:
            raise ConfigError("OverloadConfig.binding_weight must be in (0, 1)")
        if self.limit_headroom < 0:
            raise ConfigError("OverloadConfig.limit_headroom must be >= 0")
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
    holds_blind_reading = True  # see ``update_many``

    def __init__(self, config: OverloadConfig | None = None) -> None:
        super().__init__(config)
        # per key: the last score read from enough evidence, and for how many evaluations since
        # there has been too little evidence to read one
        self._last: F64 = np.zeros(0)
        self._blind: F64 = np.zeros(0)

    def grow(self, k: int) -> None:
        super().grow(k)
        extra = k - self._last.shape[0]
        if extra > 0:
            self._last = np.concatenate([self._last, np.zeros(extra)])
            self._blind = np.concatenate([self._blind, np.zeros(extra)])

    def keep(self, mask: np.ndarray) -> None:
        super().keep(mask)
        self._last, self._blind = self._last[mask], self._blind[mask]

    def update_many(self, x: Mapping[str, F64]) -> Scored:
        """While too few attempts complete to read the service (everything is queued, in
        service or waiting at the gateways: completions are what events report), the last score
        read holds, for at most ``blind_hold_evals`` evaluations: a window without answers is
        not a recovered service, and releasing a concurrency cap then would send every waiting
        request at once."""
        out = super().update_many(x)
        ran = x["attempts"] - x["rejected"]
        blind = (ran < self.config.min_ran / 2.0) & (x["mature"] > 0)
        self._blind = np.where(blind, self._blind + 1, 0.0)
        held = blind & (self._blind <= self.config.blind_hold_evals)
        score = np.where(held, np.maximum(out.score, self._last), out.score)
        self._last = np.where(blind, self._last, out.score)
        return Scored(score, out.evidence)

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


def limit_hold_ms(patience_ms: float, service_ms: float, config: OverloadConfig) -> int:
    """How long a request may wait at its gateway for a slot: what is left of ``hold_share`` of
    the clients' patience once the service time is taken off (the client's clock runs through
    the wait: a request granted a slot later would reach its client after it gave up), at most
    ``hold_max_ms`` (and that long while no client has timed out yet). A slot is granted only
    when one is free, so the answer then takes about the service time, with no queue ahead."""
    if patience_ms <= 0:
        return config.hold_max_ms
    hold = config.hold_share * patience_ms - service_ms
    return int(min(max(hold, 0.0), float(config.hold_max_ms)))


def plan(
    ctx: EvalContext, config: GovernorConfig, row: int, key: Key, age_ms: int
) -> list[Planned]:
    """Cap the requests in flight at what the service holds (``laws.concurrency_limit``).

    ``N = capacity x service time`` is the service's slots (Little's law at saturation); the cap
    ``N x (1 + limit_headroom)`` keeps a short queue so that no slot idles. Requests beyond it
    wait at their gateway (most important priority first) instead of in the service's queue,
    where the client's clock runs and the most important requests wait behind the rest; one
    that cannot get a slot within the hold budget (a share of the clients' patience) is
    rejected. A cap that binds while the service shows no queue and no client times out is probed
    upwards: ``1 + limit_headroom`` times what is in flight then (the capacity it was sized from
    may be stale; where clients time out, what is in flight counts their waits, not service)."""
    ocfg = config.overload
    f = ctx.features
    cap = float(f["capacity_per_s"][row])
    floor = float(f["latency_floor_ms"][row])
    wait = float(f["observed_wait_ms"][row])
    service = max(float(f["ok_latency_mean_ms"][row]) - wait, floor)
    sized = laws.concurrency_limit(cap, service, ocfg.limit_headroom)
    in_flight = float(f["in_flight"][row])
    attempts = float(f["attempts"][row])
    binding = attempts > 0 and float(f["throttled"][row]) / attempts >= ocfg.bind_lo
    probe = 0
    quiet = float(f["queued"][row]) < 0.5 and float(f["timeout_fraction"][row]) < ocfg.gone_lo
    if binding and quiet:
        probe = math.ceil(in_flight * (1.0 + ocfg.limit_headroom))
    # nothing answers in time to size it from (a collapse at cold start): halve what is in
    # flight, so the service drains until its answers can be measured
    backoff = math.ceil(in_flight / 2.0) if sized <= 0 else 0
    limit = max(sized, probe, backoff)
    if limit <= 0:
        return []
    hold = limit_hold_ms(float(f["patience_ms"][row]), service, ocfg)
    shares, default = gateway_shares(ctx, key[1])
    action = Action(
        "limit",
        max_inflight=limit,
        shares=shares,
        default_share=default,
        max_delay_ms=hold,
        retry_after_ms=max(ocfg.retry_after_min_ms, round(service)),
    )
    evidence: dict[str, float | int | str] = {
        "law": "max_inflight = capacity * service_ms * (1 + headroom)",
        "capacity_per_s": round(cap, 3),
        "service_ms": round(service, 1),
        "headroom": ocfg.limit_headroom,
        "sized_inflight": sized,
        "in_flight": round(in_flight, 2),
        "probe_inflight": probe,
        "backoff_inflight": backoff,
        "max_delay_ms": hold,
    }
    return [Planned("limit", Scope(endpoint=key[1]), action, evidence)]


RULE = Rule(Overload, "overload", KIND_ENDPOINT, plan)
