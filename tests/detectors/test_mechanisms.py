"""The governor does not score its own intervention, protects top priorities, sizes admission
by plain arithmetic, attacks fast and releases slowly (see detectors/scores/retry_storm.py,
detectors/scores/overload.py, detectors/policy.py).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from detectors import actions
from detectors.config import GovernorConfig
from detectors.layout import N_PRIORITIES, N_SUM, PRIO0
from detectors.policy import Planned, Policy, PolicyConfig
from detectors.scores import OverloadConfig, RetryStorm, overload, retry_storm
from detectors.windows import Key
from schemas.directive import Action, Directive, Scope

KEY: Key = ("E", "llm", "")


def storm_features(n: int, amp: float, err: float, rejected: float) -> dict[str, np.ndarray]:
    first = 100.0
    attempts = first * amp
    one = np.ones(n)
    return {
        "attempts": attempts * one,
        "first_attempts": first * one,
        "retries": (attempts - first) * one,
        "rejected": rejected * one,
        "amplification": amp * one,
        "retry_coherence": 0.2 * one,
        "error_fraction": err * one,
        "mature": one,
    }


def test_storm_needs_failures_of_the_service_not_rejections() -> None:
    det = RetryStorm()
    for _ in range(60):  # learn normal: amplification 1.05, 1 % failures
        det.update_many(storm_features(1, 1.05, 0.01, 0.0))
    failing = det.update_many(storm_features(1, 3.0, 0.6, 0.0)).score[0]
    assert failing >= 0.6
    # the service is healthy again; clients still retry the attempts a shed refused: amplification
    # as offered stays high, but nothing that reached the service failed -> no storm
    echo = det.update_many(storm_features(1, 3.0, 0.0, 150.0))
    assert echo.score[0] == 0.0
    assert echo.evidence["rejected"][0] == 150.0


def test_storm_failure_baseline_does_not_learn_the_failure() -> None:
    det = RetryStorm()
    for _ in range(60):
        det.update_many(storm_features(1, 1.05, 0.01, 0.0))
    for _ in range(600):  # a long outage whose amplification is held flat (e.g. by a shed)
        det.update_many(storm_features(1, 1.05, 0.9, 0.0))
    assert det.update_many(storm_features(1, 3.0, 0.9, 0.0)).score[0] >= 0.6


def ctx_for(prio: list[int], **features: float) -> actions.EvalContext:
    """One endpoint key ``KEY`` whose short window holds ``prio`` attempts per priority (1 s)."""
    sums = np.zeros((1, N_SUM), dtype=np.int64)
    sums[0, PRIO0 : PRIO0 + N_PRIORITIES] = prio
    n = float(sum(prio))
    feats = {
        "attempts": n,
        "attempt_rate_per_s": n,
        "retries": n / 2,
        "first_attempts": n / 2,
        "arrival_ratio": 0.0,
        "observed_wait_ms": 0.0,
        "queue_wait_ms": 0.0,
        "patience_ms": 0.0,
        "latency_floor_ms": 15.0,  # target wait: max(20 ms, 1 x floor) = 20 ms
        "ok_p50_ms": 200.0,
        "capacity_per_s": 0.0,
        "utilization": 0.0,
        "throttled": 0.0,
    } | features
    return actions.EvalContext(
        [KEY, ("P", "llm", "t")],
        {k: np.array([v]) for k, v in feats.items()},
        sums,
        np.array([0, 0]),
        {},
        lambda e, t: {"gw0": 3, "gw1": 1},
        {},
    )


def test_storm_never_constrains_protected_priorities() -> None:
    cfg = GovernorConfig()
    mixed = [300, 50, 0, 0, 0, 0, 0, 900, 0, 0]
    planned = retry_storm.plan(ctx_for(mixed), cfg, 0, KEY, 0)
    assert planned
    assert all((p.scope.min_priority or 0) >= cfg.actions.protected_priorities for p in planned)
    only_top = [500, 100, 0, 0, 0, 0, 0, 0, 0, 0]
    assert retry_storm.plan(ctx_for(only_top), cfg, 0, KEY, 0) == []


# --- retry budget sizing (``retry_storm.plan``, ``laws.retry_budget``): plain arithmetic ------


@pytest.mark.parametrize(
    ("rho", "budget"),
    [
        (0.5, 0.2),  # 0.9 / 0.5 - 1 = 0.8: capped at Finagle's 0.2
        (0.8, 0.125),  # 0.9 / 0.8 - 1: what keeps rho (1 + r) at 0.9
        (0.95, 0.0),  # first attempts alone fill 90 % of the service: no retry fits
    ],
)
def test_storm_sheds_the_retries_beyond_the_budget_its_utilization_leaves(
    rho: float, budget: float
) -> None:
    # 600 attempts: 300 first attempts, 300 retries at priority 7
    ctx = ctx_for([0, 0, 0, 0, 0, 0, 0, 600, 0, 0], capacity_per_s=100.0, utilization=rho)
    planned = {p.part: p for p in retry_storm.plan(ctx, GovernorConfig(), 0, KEY, 0)}
    assert planned["defer"].action.type == "defer"
    shed = planned["shed"]
    assert shed.evidence["retry_budget"] == pytest.approx(budget)
    assert shed.action.fraction == pytest.approx((300 - budget * 300) / 300, abs=1e-3)


def test_storm_budget_is_zero_while_capacity_is_unknown() -> None:
    ctx = ctx_for([0, 0, 0, 0, 0, 0, 0, 600, 0, 0], capacity_per_s=0.0, utilization=0.0)
    planned = {p.part: p for p in retry_storm.plan(ctx, GovernorConfig(), 0, KEY, 0)}
    assert planned["shed"].action.fraction == 1.0


# --- admission sizing (``overload.plan``): plain arithmetic --------------------------------


def admission(prio: list[int], **features: float) -> Planned:
    planned = overload.plan(ctx_for(prio, **features), GovernorConfig(), 0, KEY, 0)
    assert len(planned) == 1
    return planned[0]


def test_a_binding_throttle_holds_where_clients_give_up_and_relaxes_where_none_do() -> None:
    # the throttle paces 30 of 150 attempts: completions come at the admitted rate (150/s = the
    # capacity), so they show no excess. Where clients time out (patience 2 s) the lowest class
    # stays constrained; where none ever did, nothing is planned and the throttle relaxes
    prio = [60, 0, 0, 0, 0, 0, 0, 90, 0, 0]
    held = admission(prio, capacity_per_s=150.0, throttled=30.0, patience_ms=2_000.0)
    assert held.scope.min_priority == 7
    # horizon max(2 s, patience / 2) = 2 s: admit = 150 x (1 + 20 / 2000) = 151.5, minus class 0
    assert held.action.rate_per_s == pytest.approx(151.5 - 60.0)
    free = overload.plan(
        ctx_for(prio, capacity_per_s=150.0, throttled=30.0), GovernorConfig(), 0, KEY, 0
    )
    assert free == []


def test_admission_gives_the_low_class_what_capacity_leaves_above_it() -> None:
    # capacity 150/s, no standing queue, priority 0 completes 60/s, priority 7 arrives at
    # 2 x capacity (the queue's growth); no client timed out yet, so the horizon is the hold cap
    # (10 s): admit = 150 x (1 + 20 / 10000) = 150.3, class 7 gets 150.3 - 60, paced by the
    # gateways in proportion to their traffic
    p = admission([60, 0, 0, 0, 0, 0, 0, 90, 0, 0], capacity_per_s=150.0, arrival_ratio=2.0)
    assert p.scope.min_priority == 7
    assert p.action.type == "throttle"
    assert p.action.rate_per_s == pytest.approx(150.3 - 60.0)
    assert dict(p.action.shares) == {"gw0": 0.75, "gw1": 0.25}
    assert p.evidence["admit_per_s"] == pytest.approx(150.3)
    assert p.evidence["demand_per_s"] == pytest.approx(300.0)


def test_admission_drains_a_standing_queue_but_never_shuts_the_endpoint() -> None:
    # a 1 s wait to drain within half the patience: admit = 150 x (1 + (20 - 1000) / 2000) = 76.5
    p = admission([0] * 7 + [300, 0, 0], capacity_per_s=150.0, arrival_ratio=2.0,
                  observed_wait_ms=1_000.0, patience_ms=4_000.0)
    assert p.action.rate_per_s == pytest.approx(76.5)
    # a wait far beyond the horizon would ask for 0; half the capacity still flows
    p = admission([0] * 7 + [300, 0, 0], capacity_per_s=150.0, arrival_ratio=2.0,
                  observed_wait_ms=30_000.0, patience_ms=4_000.0)
    assert p.action.rate_per_s == pytest.approx(75.0)


def test_admission_widens_the_class_when_the_priorities_above_overrun_it() -> None:
    # priority 3 alone completes 200/s against a capacity of 150/s: admitting more of it only
    # makes all of it late, so priorities >= 3 are the class, throttled to the admitted rate
    p = admission([0, 0, 0, 200, 0, 0, 0, 100, 0, 0], capacity_per_s=150.0, arrival_ratio=2.0)
    assert p.scope.min_priority == 3
    assert p.action.rate_per_s == pytest.approx(150.3)


def test_admission_paces_for_what_the_clients_wait() -> None:
    # patience 4 s, answer ~100 ms + the 20 ms target: a paced request may wait at the gateway
    # 0.9 x 4000 - 120 ms; without a known patience, up to the hold cap
    p = admission([0] * 7 + [300, 0, 0], capacity_per_s=150.0, arrival_ratio=2.0,
                  patience_ms=4_000.0)
    assert p.action.max_delay_ms == int(0.9 * 4_000 - 200 - 20)
    p = admission([0] * 7 + [300, 0, 0], capacity_per_s=150.0, arrival_ratio=2.0)
    assert p.action.max_delay_ms == OverloadConfig().hold_max_ms


def test_no_admission_without_excess_demand() -> None:
    ctx = ctx_for([0] * 7 + [100, 0, 0], capacity_per_s=150.0)
    assert overload.plan(ctx, GovernorConfig(), 0, KEY, 0) == []


CFG = PolicyConfig(enter=0.6, exit=0.3, min_hold_ms=2_000, ttl_ms=3_000, refresh_ms=1_000)


def drive(policy: Policy, scores: list[float], plans: list[list[Planned]]) -> list[list[Directive]]:
    out = []
    for i, (s, plan) in enumerate(zip(scores, plans, strict=True)):
        ds, _ = policy.step(
            (i + 1) * 100,
            "overload",
            [KEY],
            np.array([s]),
            np.ones(1, dtype=bool),
            lambda *_a, plan=plan: plan,
            lambda r: {},
        )
        out.append(ds)
    return out


def shed(f: float) -> list[Planned]:
    return [Planned("shed", Scope(endpoint="llm", min_priority=7), Action("shed", fraction=f))]


def throttle(rate: float) -> list[Planned]:
    scope = Scope(endpoint="llm", min_priority=7)
    return [Planned("throttle", scope, Action("throttle", rate_per_s=rate, burst=1.0))]


def test_shed_escalation_is_issued_at_once() -> None:
    steps = drive(Policy(CFG), [0.9, 0.9, 0.9], [shed(0.3), shed(0.32), shed(0.8)])
    assert [d.action.fraction for d in steps[0]] == [0.3]
    assert steps[1] == []  # a small rise waits for the refresh
    assert [d.action.fraction for d in steps[2]] == [0.8]  # escalation: not held 1 s


def test_shed_releases_slowly_admitted_share_doubles_per_refresh() -> None:
    n = 100
    steps = drive(Policy(CFG), [0.9] + [0.0] * (n - 1), [shed(1.0)] + [[]] * (n - 1))
    issued = [(i, d.action.type, d.action.fraction) for i, ds in enumerate(steps) for d in ds]
    fractions = [f for _, t, f in issued if t == "shed"]
    assert fractions[:1] == [1.0]
    # once the builder no longer wants it, one step per refresh: 1 - 0.05*2, 1 - 0.2, 1 - 0.4,
    # 1 - 0.8, then 0, then the release (the episode lasts until nothing is held back)
    assert fractions[1:] == [0.9, 0.8, 0.6, 0.2, 0.0]
    assert issued[-1][1] == "release"
    assert [i for i, t, _ in issued if t == "shed"] == [0, 10, 20, 30, 40, 50]


def test_throttle_relaxes_slowly_then_releases() -> None:
    n = 120
    steps = drive(Policy(CFG), [0.9] + [0.0] * (n - 1), [throttle(40.0)] + [[]] * (n - 1))
    rates = [d.action.rate_per_s for ds in steps for d in ds if d.action.type == "throttle"]
    assert rates[0] == 40.0
    assert all(b <= 2 * max(a, 2.0) for a, b in itertools.pairwise(rates))
    assert rates[-1] * CFG.release_floor >= 40.0  # relaxed to 1 / floor x the planned rate
    assert any(d.action.type == "release" for ds in steps for d in ds)


def test_throttle_tightening_is_issued_at_once_loosening_waits() -> None:
    steps = drive(Policy(CFG), [0.9, 0.9, 0.9], [throttle(100.0), throttle(20.0), throttle(500.0)])
    assert [d.action.rate_per_s for d in steps[1]] == [20.0]
    assert steps[2] == []
