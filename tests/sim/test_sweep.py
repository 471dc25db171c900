"""The randomized sweep (``sim.sweep``): reproducible draws, documented ranges, every required
variation, ``sweep:S:i`` references, TOML dumps and one end-to-end ``flyball sim --sweep``."""

from __future__ import annotations

import json
import tomllib
from collections import Counter
from functools import lru_cache
from itertools import product
from pathlib import Path
from typing import Any

import pytest

from flyball.cli import main
from sim import sweep
from sim.cli_sim import run_sim
from sim.errors import ScenarioError
from sim.scenario import load_scenario
from sim.sweep import SweepCase, generate_case, scenario_row, summarize, to_toml

N_DRAWS = 200
SEED = 3


@lru_cache(maxsize=1)
def _cases() -> tuple[SweepCase, ...]:
    return tuple(generate_case(SEED, i) for i in range(N_DRAWS))


def _within(x: float, lo: float, hi: float) -> bool:
    return lo - 1e-9 <= x <= hi + 1e-9


def test_same_seed_and_index_give_the_same_scenario() -> None:
    a = generate_case(5, 17)
    for i in range(5):  # drawing others in between changes nothing
        generate_case(5, i)
    b = generate_case(5, 17)
    assert a.data == b.data and a.params == b.params
    assert a.scenario() == b.scenario()
    assert generate_case(5, 18).data != a.data
    assert generate_case(6, 17).data != a.data
    assert a.data["name"] == "sweep-5-17" and a.ref == "sweep:5:17"


def test_parameters_stay_in_the_documented_ranges() -> None:
    for c in _cases():
        p, doc = c.params, c.data
        sc = c.scenario()  # validates like a file
        dur = doc["duration_s"]
        lo, hi = sweep.DOUBLE_FAULT_DURATION_S if p["fault_plan"] == "two-faults" \
            else sweep.DURATION_S
        assert lo <= dur <= hi
        assert _within(doc["gateways"], *sweep.GATEWAYS)
        assert _within(len(doc["tenants"]), *sweep.TENANTS)
        assert _within(p["capacity_target_per_s"], *sweep.CAPACITY_PER_S)
        assert _within(p["capacity_per_s"]["llm"], 0.9 * sweep.CAPACITY_PER_S[0],
                       1.1 * sweep.CAPACITY_PER_S[1])
        assert _within(p["load_target"], *sweep.LOAD_X)
        assert p["load_mean"] > 0 and p["load_peak"] >= p["load_mean"] - 1e-6
        llm = sc.service("llm")
        assert _within(llm.sigma, sweep.SIGMA_LIGHT[0], sweep.SIGMA_HEAVY[1])
        assert _within(llm.ms_per_token_in, 0.0, sweep.MS_PER_TOKEN_IN[1])
        assert _within(llm.ms_per_token_out, 0.0, sweep.MS_PER_TOKEN_OUT[1])
        assert doc["high_priority_max"] == min(t.priority for t in sc.tenants)
        for t in sc.tenants:
            assert 0 <= t.priority <= 9
            assert _within(t.agents, *sweep.AGENTS)
            r = t.retry
            assert r.max_attempts in (1, *sweep.MAX_ATTEMPTS)
            assert _within(r.timeout_ms, *sweep.TIMEOUT_MS)
            assert _within(t.deadline_ms, *sweep.DEADLINE_MS)
            assert _within(r.base_ms, *sweep.BASE_MS) and r.cap_ms >= r.base_ms
            if t.arrivals != "poisson":
                assert 0 <= t.trace_offset_s < sweep.trace_span_s(t.arrivals)
                assert _within(t.trace_speedup, *sweep.TRACE_SPEEDUP)
            for ph in t.phases:
                assert 0 <= ph.start_ms < ph.end_ms <= dur * 1000
        for f in p["faults"]:
            assert 0 <= f["start_s"] < f["end_s"]
            if p["fault_plan"] == "permanent":
                assert f["end_s"] * 1000 >= sc.duration_ms + sc.max_drain_ms()
                assert p["load_peak_effective"] < 1.0
            else:
                assert f["end_s"] <= dur
                span = f["end_s"] - f["start_s"]
                assert span <= sweep.FAULT_S[1] + 1e-6
            if f["kind"] == "slowdown":
                assert f["factor"] <= sweep.SLOWDOWN_FACTOR[1]
            else:
                assert 0.0 < f["fraction"] <= 1.0
        assert c.has_fault == (p["fault_plan"] not in ("none", "permanent"))
        assert doc["organic"] is c.benign
        if c.benign:
            assert not c.has_fault
            assert p["load_peak_effective"] < sweep.BENIGN_LOAD or p["polite_clients"]


def test_every_required_variation_occurs() -> None:
    cases = _cases()
    plans = Counter(c.params["fault_plan"] for c in cases)
    assert set(plans) == set(sweep.FAULT_PLANS)
    fault_kinds = {f["kind"] for c in cases for f in c.params["faults"]
                   if c.params["fault_plan"] != "permanent"}
    assert fault_kinds == set(sweep.FAULT_KINDS)
    retries = [t["retry"] for c in cases for t in c.data["tenants"]]
    styles = {(r["backoff"], r["jitter"]) for r in retries}
    assert styles == set(product(sweep.BACKOFFS, sweep.JITTERS))
    assert any(r["max_attempts"] == 1 for r in retries)
    assert {t["arrivals"] for c in cases for t in c.data["tenants"]} == {
        "poisson", "azure-conv", "azure-code"}
    assert any(c.params["stop"] for c in cases)
    stops = [ph for c in cases for t in c.data["tenants"] for ph in t.get("phases", [])
             if ph["rate_x"] == 0.0]
    assert stops and all(ph["end_s"] > ph["start_s"] for ph in stops)
    # a fault before the governor's warm-up ends; two faults a minute apart; one during a ramp
    assert any(f["start_s"] < 5.0 for c in cases for f in c.params["faults"])
    two = [c.params["faults"] for c in cases if c.params["fault_plan"] == "two-faults"]
    assert two and all(abs(f[1]["start_s"] - f[0]["start_s"] - 60.0) < 0.02 for f in two)
    for c in cases:
        if c.params["fault_plan"] == "ramp-fault":
            sp, f = c.params["shape_params"], c.params["faults"][0]
            assert sp["start_s"] <= f["start_s"] <= sp["end_s"]
    # a benign permanent change: slowdown 1.3..2 to the end, load below what is left
    perm = [c for c in cases if c.params["fault_plan"] == "permanent"]
    assert any(c.params["faults"][0]["kind"] == "slowdown" and c.benign for c in perm)
    # service-time tails, load, fleet and priorities
    assert {c.params["service_tail"] for c in cases} == set(sweep.TAILS)
    assert any(c.scenario().service("llm").sigma > 1.0 for c in cases)
    assert any(c.params["load_initial"] > 1.0 and c.params["shape"] == "steady" for c in cases)
    assert any(c.params["load_target"] < 0.5 for c in cases)
    assert {len(c.data["tenants"]) for c in cases} == {1, 2, 3, 4}
    assert {c.data["gateways"] for c in cases} == {1, 2, 3, 4}
    assert {c.params["priority_mode"] for c in cases} == set(sweep.PRIORITY_MODES)
    assert {c.params["shape"] for c in cases} == set(sweep.SHAPES)
    assert {c.params["benign_reason"] for c in cases} == {None, "quiet", "polite-clients"}
    assert any(t["fanout"] for c in cases for t in c.data["tenants"])


def test_sweep_reference_loads_and_dumps(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    c = generate_case(2, 4)
    assert load_scenario("sweep:2:4") == c.scenario()
    for bad in ("sweep:2", "sweep:a:1", "sweep:1:-1"):
        with pytest.raises(ScenarioError, match="sweep:S:i"):
            load_scenario(bad)
    out = tmp_path / "s.toml"
    assert run_sim("sweep:2:4", None, False, False, None, None, dump_scenario=str(out)) == 0
    assert tomllib.loads(out.read_text()) == c.data
    assert load_scenario(str(out)) == c.scenario()
    assert run_sim("sweep:2:4", "none", False, False, None, None) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["scenario"] == "sweep-2-4" and m["seed"] == c.data["seed"]


def test_toml_writer_round_trips() -> None:
    doc: dict[str, Any] = {
        "name": 'a "quoted" name', "x": 1.5, "n": 3, "ok": True, "tiny": 1e-5, "empty": [],
        "ints": [1, 2], "t": {"k": "v"},
        "arr": [{"a": 1, "sub": {"b": 2}, "inner": [{"c": 3}, {"c": 4}]}, {"a": 5}],
    }
    assert tomllib.loads(to_toml(doc, ["a comment", ""])) == doc


def _m(gp: float, storms: int = 0) -> dict[str, Any]:
    return {"goodput_ratio": gp, "waste_fraction": 0.1, "false_storm_directives": storms,
            "directives_by_kind": {}, "error": None, "elapsed_s": 0.1}


def test_row_and_summary_definitions() -> None:
    benign = next(c for c in _cases() if c.benign)
    faulty = next(c for c in _cases() if c.has_fault)
    harmed = scenario_row(benign, {"none": _m(0.95), "governor": _m(0.96, storms=1)})
    assert harmed["harm"] == {"goodput": False, "storm_directives": True}
    assert harmed["flag"] == "HARM" and harmed["governor_best"]
    fine = scenario_row(benign, {"none": _m(0.95), "governor": _m(0.945)})
    assert fine["harm"] == {"goodput": False, "storm_directives": False} and fine["flag"] == "ok"
    short = scenario_row(faulty, {"none": _m(0.5), "retry-budget": _m(0.8), "governor": _m(0.7)})
    assert short["harm"] is None and short["flag"] == "short" and not short["governor_best"]
    assert short["best_other"] == {"policy": "retry-budget", "goodput_ratio": 0.8}
    rep = summarize([harmed, fine, short], 3, ["none", "retry-budget", "governor"], 1.0, 1)
    s = rep["summary"]
    assert s["n"] == 3 and s["benign_harm"] == 1
    assert s["governor_best_share"] == pytest.approx(2 / 3)
    assert s["storm_waste_median"] == pytest.approx(0.1)
    assert rep["worst"][0]["id"] in (benign.ref, faulty.ref)


def test_cli_sweep_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--sweep", "2", "--seed", "1", "--json", "--jobs", "2"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out.strip().splitlines()[-1])
    s = report["summary"]
    assert s["n"] == 2 and s["errors"] == 0
    for key in ("governor_best_share", "benign_harm", "storm_waste_median", "runtime_s"):
        assert key in s
    assert len(report["scenarios"]) == 2 and 1 <= len(report["worst"]) <= 5
    row = report["scenarios"][0]
    assert row["id"] == "sweep:1:0" and {"governor", "none"} <= set(row["policies"])
    for key in ("kind", "benign", "load", "policies", "governor"):
        assert key in row
    assert {"goodput_ratio", "waste_fraction"} <= set(row["policies"]["governor"])
    assert {"directives_by_kind", "false_storm_directives"} <= set(row["governor"])
    assert report["worst"][0]["command"].startswith("flyball sim --scenario sweep:1:")
    assert "[1/2]" in err and "[2/2]" in err


def test_cli_sweep_argument_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim"]) == 2
    assert "--sweep N" in capsys.readouterr().err
    assert main(["sim", "--sweep", "2", "--scenario", "retry-storm"]) == 2
    assert "--scenario" in capsys.readouterr().err
    assert main(["sim", "--sweep", "0"]) == 2
    assert "N must be >= 1" in capsys.readouterr().err
