"""Run a scenario under a policy and compute its metrics (the API behind ``flyball sim``)."""

from __future__ import annotations

from typing import Any

from sim.engine import RunResult, simulate
from sim.metrics import compute
from sim.policies import POLICY_NAMES
from sim.scenario import Scenario


def run(scenario: Scenario, policy: str, seed: int | None = None,
        params: dict[str, Any] | None = None) -> RunResult:
    """One simulation run (raw result)."""
    return simulate(scenario, policy, seed=seed, params=params)


def run_metrics(scenario: Scenario, policy: str, seed: int | None = None,
                params: dict[str, Any] | None = None) -> dict[str, Any]:
    """One run's metrics (see ``sim.metrics``)."""
    return compute(simulate(scenario, policy, seed=seed, params=params))


def governor_unavailable() -> str | None:
    """Why the ``governor`` policy cannot run here, or None when it can."""
    try:
        import sim.policies.governor  # noqa: F401
    except ImportError as e:
        return f"needs detectors.governor and gateway.enforce ({e})"
    return None


def available_policies() -> tuple[list[str], dict[str, str]]:
    """(policies that can run, {policy: why not} for those that cannot)."""
    missing: dict[str, str] = {}
    why = governor_unavailable()
    if why is not None:
        missing["governor"] = why
    return [p for p in POLICY_NAMES if p not in missing], missing
