"""Labelled synthetic patterns: each rule acts on its pattern within 1 s of its evidence, with
the right kind and scope; organic growth of the same size gets no storm/contention/fan-out
directive; plain traffic gets no directive at all. At three base rates (50/s, 500/s, 5000/s)."""

from __future__ import annotations

from functools import cache

import pytest
from synth import CLIENT_TIMEOUT_MS, EPOCH_MS, Scenario, feed, generate

from detectors.governor import Governor, GovernorOutput
from schemas.directive import Directive

RATES = (50.0, 500.0, 5000.0)


@cache
def run(pattern: str, rate: float) -> tuple[Scenario, list[GovernorOutput]]:
    sc = Scenario(pattern=pattern, rate_per_s=rate, duration_ms=15_000, onset_ms=11_000)
    return sc, feed(Governor(), generate(sc))


def directives(outs: list[GovernorOutput]) -> list[Directive]:
    return [d for o in outs for d in o.directives]


def first_after_onset(sc: Scenario, ds: list[Directive], detector: str) -> Directive:
    hits = [
        d for d in ds if d.reason.detector == detector and d.issued_ms >= EPOCH_MS + sc.onset_ms
    ]
    assert hits, f"{detector} never acted"
    return hits[0]


def delay_ms(sc: Scenario, d: Directive) -> int:
    return d.issued_ms - EPOCH_MS - sc.onset_ms


def within_traffic(sc: Scenario, ds: list[Directive]) -> list[Directive]:
    """Directives while traffic flows (the last second drains: windows empty out)."""
    return [d for d in ds if d.issued_ms < EPOCH_MS + sc.duration_ms]


@pytest.mark.parametrize("rate", RATES)
def test_plain_traffic_gets_no_directive(rate: float) -> None:
    sc, outs = run("none", rate)
    assert within_traffic(sc, directives(outs)) == []


@pytest.mark.parametrize("rate", RATES)
def test_fast_failures_retried_in_phase_are_no_storm_while_nothing_is_wasted(rate: float) -> None:
    """The pattern's endpoint fails fast and its clients retry in phase: attempts per intent
    quadruple (the storm detector scores), but every attempt is answered at once and no client
    times out. Retries are a storm to govern only where they overrun the service into work for
    nobody (``RULE.requires``: the overload rule); here shedding them would only fail intents
    that a retry could still save."""
    _sc, outs = run("storm", rate)
    storm_scores = [s for o in outs for s in o.scores
                    if s.detector == "retry_storm" and s.endpoint == "chat" and s.score >= 0.6]
    assert storm_scores, "the detector still reads the storm"
    ds = directives(outs)
    assert not [d for d in ds if d.reason.detector == "retry_storm"]


@pytest.mark.parametrize("rate", RATES)
def test_overload_admits_once_latency_turns_into_work_for_nobody(rate: float) -> None:
    """The pattern's latency quadruples over 2 s and its clients start timing out at +2 s:
    waiting is not waste, work that finishes after its client gave up is. The overload rule
    caps the requests in flight within a second of the first timeouts it sees, none before the
    onset. Events are stamped at completion: the first attempts to time out (started at +2 s)
    are seen when their clients give up, one client timeout later."""
    sc, outs = run("saturation", rate)
    ds = directives(outs)
    d = first_after_onset(sc, ds, "overload")
    assert 0 <= delay_ms(sc, d) <= 2_000 + CLIENT_TIMEOUT_MS + 1_000
    assert d.action.type == "limit" and d.action.max_delay_ms > 0
    assert d.scope.endpoint == "chat" and d.scope.tenant is None
    assert d.action.max_inflight >= 1
    assert "max_inflight = capacity" in str(d.reason.evidence["law"])
    assert not [x for x in within_traffic(sc, ds) if x.issued_ms < EPOCH_MS + sc.onset_ms]


@pytest.mark.parametrize("rate", RATES)
def test_contention_throttles_the_flooding_tenant(rate: float) -> None:
    sc, outs = run("contention", rate)
    ds = directives(outs)
    d = first_after_onset(sc, ds, "contention")
    assert 0 <= delay_ms(sc, d) <= 1000
    assert d.action.type == "throttle"
    assert d.scope.to_json() == {"endpoint": "chat", "tenant": "t0"}
    assert d.action.rate_per_s > 0
    shares = dict(d.action.shares)
    assert set(shares) == {"gw0", "gw1", "gw2"}
    assert abs(sum(shares.values()) - 1.0) < 1e-3
    others = {x.scope.tenant for x in ds if x.reason.detector == "contention"}
    assert others == {"t0"}


@pytest.mark.parametrize("rate", RATES)
def test_fanout_defers_subrequests_of_the_tenant(rate: float) -> None:
    sc, outs = run("fanout", rate)
    d = first_after_onset(sc, directives(outs), "fanout")
    assert 0 <= delay_ms(sc, d) <= 1000
    assert d.action.type == "defer"
    assert d.scope.tenant == "t1" and d.scope.min_depth == 1
    assert d.scope.min_priority is not None and d.scope.min_priority >= 2


@pytest.mark.parametrize("rate", RATES)
def test_organic_surge_is_a_capacity_signal_not_interference(rate: float) -> None:
    sc, outs = run("organic", rate)
    guarded = {"retry_storm", "contention", "fanout"}
    assert [d for d in directives(outs) if d.reason.detector in guarded] == []
    organic = [
        s
        for o in outs
        for s in o.scores
        if s.detector == "organic_growth" and s.endpoint and s.score >= 0.5
    ]
    assert organic, "organic growth not reported"
    assert min(s.ts_ms for s in organic) - EPOCH_MS >= sc.onset_ms


def test_contention_flood_is_not_called_organic_at_the_endpoint() -> None:
    _sc, outs = run("contention", 500.0)
    at_chat = [
        s
        for o in outs
        for s in o.scores
        if s.detector == "organic_growth" and s.endpoint == "chat" and s.tenant == ""
    ]
    assert all(s.score < 0.5 for s in at_chat)
