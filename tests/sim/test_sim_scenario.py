"""Scenario files: every shipped one parses; bad keys are named in the error."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from sim.errors import ScenarioError
from sim.scenario import SCENARIO_DIR, load_scenario, parse_scenario, shipped_scenarios

REQUIRED = {
    "retry-storm", "fanout-explosion", "noisy-neighbor", "saturation-ramp", "priority-spike",
    "organic-surge",
}


def _base() -> dict[str, Any]:
    return tomllib.loads((SCENARIO_DIR / "retry-storm.toml").read_text())


def test_shipped_scenarios_parse() -> None:
    assert set(shipped_scenarios()) >= REQUIRED
    for name in shipped_scenarios():
        sc = load_scenario(name)
        assert sc.name == name
        assert sc.duration_ms > 0 and sc.tenants and sc.services
    assert load_scenario("organic-surge").organic
    assert not load_scenario("retry-storm").organic


def test_every_key_is_documented() -> None:
    readme = (SCENARIO_DIR / "README.md").read_text()
    keys: set[str] = set()
    for p in SCENARIO_DIR.glob("*.toml"):
        stack: list[Any] = [tomllib.loads(p.read_text())]
        while stack:
            d = stack.pop()
            if isinstance(d, dict):
                keys.update(k for k in d if k != "policies")
                stack.extend(d.values())
            elif isinstance(d, list):
                stack.extend(d)
    missing = {k for k in keys if f"`{k}`" not in readme and f"[{k}]" not in readme
               and f".{k}]" not in readme}
    assert not missing


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("duration_s"), "duration_s: required key is missing"),
        (lambda d: d.update(bogus=1), "bogus: unknown key"),
        (lambda d: d["tenants"][1]["retry"].update(jitter="wild"), "tenants[1].retry.jitter"),
        (
            lambda d: d["services"][0]["faults"][0].update(kind="meteor"),
            "services[0].faults[0].kind",
        ),
        (lambda d: d["tenants"][0].update(endpoints=["nowhere"]), "tenants[0].endpoints"),
        (lambda d: d["tenants"][0].update(priority=12), "tenants[0].priority: must be <= 9"),
        (lambda d: d["services"][0].update(slots="many"), "services[0].slots: must be an integer"),
        (lambda d: d["tenants"][0]["retry"].update(timeout_ms=True), "tenants[0].retry.timeout_ms"),
    ],
)
def test_bad_keys_are_named(mutate: Any, message: str) -> None:
    d = _base()
    mutate(d)
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_scenario(d)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="neither a file nor a shipped scenario"):
        load_scenario("no-such-scenario")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(str(bad))
