"""The governor does not score its own intervention, protects top priorities, attacks fast and
releases slowly (see detectors/scores/retry_storm.py, detectors/actions.py, detectors/policy.py).
"""

from __future__ import annotations

import itertools

import numpy as np

from detectors import actions
from detectors.config import ActionConfig
from detectors.layout import N_PRIORITIES, N_SUM, PRIO0
from detectors.policy import Planned, Policy, PolicyConfig
from detectors.scores import RetryStorm, Scored
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


def ctx_for(prio: list[int], successes: float, errors: float, ratio: float) -> actions.EvalContext:
    sums = np.zeros((1, N_SUM), dtype=np.int64)
    sums[0, PRIO0 : PRIO0 + N_PRIORITIES] = prio
    n = float(sum(prio))
    feats = {
        "attempts": np.array([n]),
        "attempt_rate_per_s": np.array([n]),
        "successes": np.array([successes]),
        "errors": np.array([errors]),
        "retries": np.array([n / 2]),
        "first_attempts": np.array([n / 2]),
    }
    sat = Scored(np.array([0.9]), {"latency_ratio": np.array([ratio])})
    return actions.EvalContext(
        [KEY, ("P", "llm", "t")],
        feats,
        sums,
        np.array([0, 0]),
        {},
        lambda e, t: {"gw0": 3, "gw1": 1},
        {"saturation": sat},
    )


def test_storm_and_saturation_never_constrain_protected_priorities() -> None:
    cfg = ActionConfig()
    mixed = [300, 50, 0, 0, 0, 0, 0, 900, 0, 0]
    for planned in (
        actions.storm(ctx_for(mixed, 150, 0, 3.0), cfg, 0, KEY),
        actions.saturation(ctx_for(mixed, 150, 0, 3.0), cfg, 0, KEY, 0),
    ):
        assert planned
        assert all((p.scope.min_priority or 0) >= cfg.protected_priorities for p in planned)
    only_top = [500, 100, 0, 0, 0, 0, 0, 0, 0, 0]
    assert actions.storm(ctx_for(only_top, 150, 0, 3.0), cfg, 0, KEY) == []
    assert actions.saturation(ctx_for(only_top, 150, 0, 3.0), cfg, 0, KEY, 0) == []


def test_saturation_throttles_the_low_class_to_what_the_top_leaves() -> None:
    cfg = ActionConfig()
    # served 150/s, queue at 1.5x normal latency, priority 0 takes 60/s: batch gets 150/1.5-60
    planned = actions.saturation(
        ctx_for([60, 0, 0, 0, 0, 0, 0, 700, 0, 0], 150, 0, 1.5), cfg, 0, KEY, 0
    )
    kinds = {p.part: p for p in planned}
    assert kinds["throttle"].scope.min_priority == 7
    assert kinds["throttle"].action.rate_per_s == 40.0
    assert dict(kinds["throttle"].action.shares) == {"gw0": 0.75, "gw1": 0.25}
    # a long queue: the batch class gets nothing until it drains
    planned = actions.saturation(
        ctx_for([60, 0, 0, 0, 0, 0, 0, 700, 0, 0], 150, 0, 4.0), cfg, 0, KEY, 0
    )
    assert {p.part: p for p in planned}["throttle"].action.rate_per_s == 0.0


def test_saturation_of_a_single_class_sheds_at_most_max_excess() -> None:
    cfg = ActionConfig()
    # every client times out: nothing served; the endpoint is never shut off
    planned = actions.saturation(
        ctx_for([0, 0, 0, 400, 0, 0, 0, 0, 0, 0], 0, 0, 5.0), cfg, 0, KEY, 0
    )
    kinds = {p.part: p for p in planned}
    assert "throttle" not in kinds
    assert kinds["shed"].action.fraction == cfg.max_excess


CFG = PolicyConfig(enter=0.6, exit=0.3, min_hold_ms=2_000, ttl_ms=3_000, refresh_ms=1_000)


def drive(policy: Policy, scores: list[float], plans: list[list[Planned]]) -> list[list[Directive]]:
    out = []
    for i, (s, plan) in enumerate(zip(scores, plans, strict=True)):
        ds, _ = policy.step(
            (i + 1) * 100,
            "saturation",
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
