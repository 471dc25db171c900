"""Policy: hysteresis, minimum hold, refresh with the same id, release, rate cap, scope."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.errors import ConfigError
from detectors.policy import Planned, Policy, PolicyConfig
from detectors.windows import Key
from schemas.directive import Action, Directive, Scope

KEYS: list[Key] = [("E", "a", ""), ("E", "b", ""), ("E", "c", "")]
CFG = PolicyConfig(enter=0.6, exit=0.3, min_hold_ms=2_000, ttl_ms=3_000, refresh_ms=1_000)


def build(det: str, row: int, key: Key, onset_ms: int, now_ms: int) -> list[Planned]:
    return [Planned("defer", Scope(endpoint=key[1], min_attempt=1), Action("defer", hold_ms=100))]


def drive(policy: Policy, scores: list[list[float]], step_ms: int = 100) -> list[list[Directive]]:
    out = []
    for i, row in enumerate(scores):
        ds, _ = policy.step(
            (i + 1) * step_ms,
            "retry_storm",
            KEYS,
            np.array(row),
            np.ones(3, dtype=bool),
            build,
            lambda r: {"row": r},
        )
        out.append(ds)
    return out


def test_hysteresis_enter_above_enter_stay_above_exit() -> None:
    s = [[0.5, 0, 0]] * 3 + [[0.65, 0, 0]] + [[0.4, 0, 0]] * 40 + [[0.2, 0, 0]]
    steps = drive(Policy(CFG), s)
    assert steps[0] == [] and steps[2] == []
    entered = steps[3]
    assert [d.action.type for d in entered] == ["defer"]
    assert all(d.action.type != "release" for ds in steps[4:-1] for d in ds)
    assert [d.action.type for d in steps[-1]] == ["release"]
    assert steps[-1][0].id == entered[0].id


def test_minimum_hold_then_release() -> None:
    s = [[0.9, 0, 0]] + [[0.0, 0, 0]] * 25
    steps = drive(Policy(CFG), s)
    releases = [i for i, ds in enumerate(steps) if any(d.action.type == "release" for d in ds)]
    assert releases == [20]  # onset at 100 ms, released at 2100 ms: held 2 s


def test_refresh_keeps_id_and_moves_expiry() -> None:
    steps = drive(Policy(CFG), [[0.9, 0, 0]] * 35)
    issued = [d for ds in steps for d in ds]
    assert [d.issued_ms for d in issued] == [100, 1100, 2100, 3100]
    assert len({d.id for d in issued}) == 1
    assert all(d.expires_ms == d.issued_ms + CFG.ttl_ms for d in issued)


def test_rate_cap_takes_highest_scores_first() -> None:
    policy = Policy(PolicyConfig(max_new_per_eval=1, max_directives_per_s=2))
    steps = drive(policy, [[0.7, 0.9, 0.8]] * 5)
    entered = [d.scope.endpoint for ds in steps for d in ds]
    assert entered == ["b", "c"]  # one per evaluation, then the per-second budget is spent


def test_disallowed_keys_never_enter() -> None:
    policy = Policy(CFG)
    ds, _ = policy.step(
        100,
        "x",
        KEYS,
        np.array([0.9, 0.9, 0.9]),
        np.array([False, True, False]),
        build,
        lambda r: {},
    )
    assert [d.scope.endpoint for d in ds] == ["b"]


def test_scope_never_broader_than_the_key() -> None:
    policy = Policy(CFG)
    ds, _ = policy.step(
        100, "x", KEYS, np.array([0.9, 0.9, 0.9]), np.ones(3, dtype=bool), build, lambda r: {}
    )
    for d in ds:
        assert d.scope.endpoint in {"a", "b", "c"} and d.scope.min_attempt == 1


def test_ids_are_deterministic() -> None:
    a = drive(Policy(CFG), [[0.9, 0, 0]] * 3)
    b = drive(Policy(CFG), [[0.9, 0, 0]] * 3)
    assert a == b


def test_escalation_adds_a_directive_within_the_episode() -> None:
    def escalating(det: str, row: int, key: Key, onset_ms: int, now_ms: int) -> list[Planned]:
        out = build(det, row, key, onset_ms, now_ms)
        if now_ms - onset_ms >= 300:
            out.append(Planned("shed", out[0].scope, Action("shed", fraction=0.5)))
        return out

    policy = Policy(CFG)
    kinds = []
    for i in range(6):
        ds, _ = policy.step(
            (i + 1) * 100,
            "x",
            KEYS,
            np.array([0.9, 0, 0]),
            np.ones(3, dtype=bool),
            escalating,
            lambda r: {},
        )
        kinds.append([d.action.type for d in ds])
    assert kinds == [["defer"], [], [], ["shed"], [], []]


@pytest.mark.parametrize(
    "kwargs",
    [{"enter": 0.3, "exit": 0.5}, {"ttl_ms": 500, "refresh_ms": 1_000}, {"min_hold_ms": -1}],
)
def test_policy_config_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        PolicyConfig(**kwargs)  # type: ignore[arg-type]
