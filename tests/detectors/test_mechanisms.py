"""The governor does not score its own intervention, protects top priorities, sizes admission
by plain arithmetic, attacks fast and releases slowly (see detectors/scores/retry_storm.py,
detectors/scores/overload.py, detectors/policy.py).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from detectors import actions, laws
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
        "ok_latency_mean_ms": 0.0,
        "in_flight": 0.0,
        "queued": 0.0,
        "timeout_fraction": 0.0,
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


def test_concurrency_limit_is_littles_law_with_headroom() -> None:
    # 150 completions/s at saturation, 200 ms in service: 30 slots busy; 25 % headroom -> 38
    assert laws.concurrency_limit(150.0, 200.0, 0.25) == 38
    # a 5x slower service serves 5x less: the same slots, the same cap (it clocks itself)
    assert laws.concurrency_limit(30.0, 1_000.0, 0.25) == 38
    assert laws.concurrency_limit(0.5, 100.0, 0.25) == 1  # at least one request in flight
    assert laws.concurrency_limit(0.0, 200.0, 0.25) == 0  # capacity unknown: nothing sized


def test_overload_caps_in_flight_at_the_services_slots() -> None:
    # capacity 150/s, answers 260 ms of which 60 ms is the queue's wait: 200 ms in service,
    # 30 slots, cap 38 for the endpoint, apportioned by the gateways' traffic
    p = admission([0] * 7 + [300, 0, 0], capacity_per_s=150.0, ok_latency_mean_ms=260.0,
                  observed_wait_ms=60.0, queued=1.0, in_flight=60.0)
    assert p.action.type == "limit"
    assert p.scope == Scope(endpoint="llm")  # priorities: the gateways' wait queues order them
    assert p.action.max_inflight == 38
    assert dict(p.action.shares) == {"gw0": 0.75, "gw1": 0.25}
    assert p.evidence["sized_inflight"] == 38 and p.evidence["probe_inflight"] == 0


def test_a_cap_that_binds_without_a_queue_is_probed_upwards() -> None:
    # the cap binds (30 of 150 attempts waited) but the service shows no queue: the capacity it
    # was sized from is stale (a fault ended): (1 + headroom) x what is in flight now
    p = admission([0] * 7 + [150, 0, 0], capacity_per_s=50.0, ok_latency_mean_ms=200.0,
                  throttled=30.0, in_flight=20.0)
    assert p.evidence["sized_inflight"] == 13
    assert p.action.max_inflight == 25  # ceil(20 x 1.25)
    # the same with a queue standing: the law holds, no probe
    q = admission([0] * 7 + [150, 0, 0], capacity_per_s=50.0, ok_latency_mean_ms=200.0,
                  throttled=30.0, in_flight=20.0, queued=1.0)
    assert q.action.max_inflight == 13
    # ... or with many clients timing out (``gone_lo``): what is in flight then counts their
    # waits, not service
    t = admission([0] * 7 + [150, 0, 0], capacity_per_s=50.0, ok_latency_mean_ms=200.0,
                  throttled=30.0, in_flight=20.0, timeout_fraction=0.4)
    assert t.action.max_inflight == 13
    # the timeouts of a heavy tail's stragglers (a few percent, no queue) do not stop the probe:
    # a service near its capacity with a 1.2 s timeout always has some
    h = admission([0] * 7 + [150, 0, 0], capacity_per_s=50.0, ok_latency_mean_ms=200.0,
                  throttled=30.0, in_flight=20.0, timeout_fraction=0.06)
    assert h.action.max_inflight == 25


def test_a_collapse_that_answers_nothing_halves_what_is_in_flight() -> None:
    # no success to size the cap from (capacity unknown): halve what is in flight
    p = admission([0] * 7 + [150, 0, 0], in_flight=90.0)
    assert p.action.max_inflight == 45 and p.evidence["backoff_inflight"] == 45


def test_requests_wait_for_a_slot_what_their_clients_patience_leaves_for_service() -> None:
    # the client's clock runs through the wait: 0.9 of a 4 s patience, less the 200 ms the
    # service then takes
    p = admission([0] * 7 + [300, 0, 0], capacity_per_s=150.0, ok_latency_mean_ms=200.0,
                  patience_ms=4_000.0)
    assert p.action.max_delay_ms == int(0.9 * 4_000 - 200)
    # clients who give up before the service could answer after any wait: no wait, refuse now
    p = admission([0] * 7 + [300, 0, 0], capacity_per_s=150.0, ok_latency_mean_ms=200.0,
                  patience_ms=210.0)
    assert p.action.max_delay_ms == 0
    p = admission([0] * 7 + [300, 0, 0], capacity_per_s=150.0, ok_latency_mean_ms=200.0)
    assert p.action.max_delay_ms == OverloadConfig().hold_max_ms


def test_nothing_is_planned_with_nothing_to_size_from() -> None:
    ctx = ctx_for([0] * 7 + [100, 0, 0])
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
