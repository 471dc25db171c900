"""The overload rule in the simulator: a cold start inside an incident (overloaded from the first
second, nothing normal ever learned), and how an operator turns a rule off (``disabled``)."""

from __future__ import annotations

from typing import Any

from sim.engine import simulate
from sim.metrics import compute
from sim.scenario import parse_scenario


def cold_start(acts: bool = True) -> dict[str, Any]:
    return {
        "name": "cold-start-overload",
        "seed": 5,
        "duration_s": 40,
        "gateways": 2,
        "services": [{"name": "llm", "slots": 20, "queue_limit": 5000, "service_ms_median": 400,
                      "service_ms_sigma": 0.3}],
        "tenants": [{
            "name": "acme", "agents": 200, "priority": 5, "rate_per_s": 90.0,  # ~1.8x capacity
            "endpoints": ["llm"], "deadline_ms": 10_000, "tokens": "none",
            "retry": {"max_attempts": 3, "backoff": "none", "jitter": "none",
                      "timeout_ms": 2_000},
        }],
        "policies": {"governor": {} if acts else {"disabled": ["overload"]}},
    }


def test_cold_start_overload_is_capped_at_the_services_slots_within_seconds() -> None:
    sc = parse_scenario(cold_start(True))
    r = simulate(sc, "governor")
    overload = [(t, d) for t, d in r.directives
                if d.reason.detector == "overload" and d.action.type == "limit"]
    assert overload, "no overload directive at a cold start inside an incident"
    t_first, first = overload[0]
    assert t_first <= 5_000
    assert first.action.max_delay_ms > 0  # excess waits at the gateways, not only rejected
    ev = first.reason.evidence
    assert "law" in ev and ev["capacity_per_s"] > 0 and "sized_inflight" in ev
    # the service has 20 slots: the cap (slots x 1.25 headroom = 25) is about that, however
    # many requests arrive
    caps = [d.action.max_inflight for _, d in overload[5:]]
    assert 15 <= sorted(caps)[len(caps) // 2] <= 40
    governed = compute(r)["goodput_ratio"]
    ungoverned = compute(simulate(parse_scenario(cold_start(True)), "none"))["goodput_ratio"]
    assert governed > 2 * ungoverned


def test_a_disabled_rule_does_not_act() -> None:
    r = simulate(parse_scenario(cold_start(False)), "governor")
    assert not [d for _, d in r.directives if d.reason.detector == "overload"]
