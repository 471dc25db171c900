"""The governor against the shipped scenarios (runs once detectors/ and gateway/ are in place).

Targets (from the design brief; thresholds are not tuned to pass):
- retry-storm: recovery ≤ 5 s, waste ≤ half of ``none``'s, goodput ≥ every other policy's;
- organic-surge: no storm directives, goodput ≥ 0.98 × ``none``'s;
- priority-spike: high-priority availability ≥ 0.994.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from sim.policies import POLICY_NAMES
from sim.runner import governor_unavailable, run_metrics
from sim.scenario import load_scenario

pytestmark = pytest.mark.skipif(
    governor_unavailable() is not None, reason=str(governor_unavailable())
)


@cache
def metrics(scenario: str, policy: str) -> dict[str, Any]:
    return run_metrics(load_scenario(scenario), policy)


def test_retry_storm_governor_recovers() -> None:
    gov = metrics("retry-storm", "governor")
    none = metrics("retry-storm", "none")
    assert gov["recovery_s"] is not None and gov["recovery_s"] <= 5.0
    assert gov["waste_fraction"] <= 0.5 * none["waste_fraction"]
    for p in POLICY_NAMES:
        if p != "governor":
            assert gov["goodput_ratio"] >= metrics("retry-storm", p)["goodput_ratio"], p


def test_organic_surge_is_not_a_storm() -> None:
    gov = metrics("organic-surge", "governor")
    assert gov["false_storm_directives"] == 0
    assert gov["goodput_ratio"] >= 0.98 * metrics("organic-surge", "none")["goodput_ratio"]


@pytest.mark.xfail(
    strict=True,
    reason="issue 9: the physical overload rule reads a 12x spike from completions ~1 s late "
    "(the retired latency-deviation rule did in 0.3 s); priority 0 then waits behind the "
    "backlog admitted before the throttle: availability 0.973 (0.46 before the gateway's slot "
    "queue became adaptive LIFO)",
)
def test_priority_spike_protects_high_priority() -> None:
    assert metrics("priority-spike", "governor")["high_priority_availability"] >= 0.994


def test_governor_is_deterministic() -> None:
    sc = load_scenario("retry-storm")
    assert run_metrics(sc, "governor", seed=3) == run_metrics(sc, "governor", seed=3)


def test_governor_config_overrides() -> None:
    from sim.errors import ScenarioError
    from sim.policies.governor import _config

    cfg = _config({"bucket_ms": 50, "actions": {"storm_hold_ms": 100}, "horizons_ms": [500, 5000]})
    assert cfg.bucket_ms == 50 and cfg.actions.storm_hold_ms == 100
    assert cfg.horizons_ms == (500, 5000)
    with pytest.raises(ScenarioError, match=r"policies\.governor\.nope"):
        _config({"nope": 1})
    with pytest.raises(ScenarioError, match=r"policies\.governor"):
        _config({"bucket_ms": -1})
