"""The pure enforcement core: scopes, precedence, token buckets, jitter, shedding, expiry."""

from __future__ import annotations

import random

import numpy as np
import pytest
from gw_helpers import make_directive
from scipy import stats

from gateway.enforce import ADMIT, Decision, DirectiveTable, RequestMeta
from schemas.columns import APPLIED_CODES
from schemas.directive import Action, Scope

T0 = 1_700_000_000_000
EP = "POST /v1/chat"


def table(*directives: object, gateway_id: str = "gw-a") -> DirectiveTable:
    t = DirectiveTable(gateway_id)
    for d in directives:
        assert t.apply(d, T0) == "applied"  # type: ignore[arg-type]
    return t


def req(endpoint: str = EP, tenant: str = "t1", agent_id: str = "a1", priority: int = 0,
        attempt: int = 0, depth: int = 0) -> RequestMeta:
    return RequestMeta(endpoint, tenant, agent_id, priority, attempt, depth)


def shed(**scope: object) -> Action:
    del scope
    return Action("shed", retry_after_ms=2_000, fraction=1.0)


RNG = random.Random(0)


def test_empty_table_admits_with_the_singleton() -> None:
    t = DirectiveTable("gw")
    assert t.empty
    assert t.admit(req(), T0, RNG) is ADMIT


def test_other_endpoint_is_untouched() -> None:
    t = table(make_directive(shed(), Scope(endpoint=EP), issued_ms=T0))
    assert t.admit(req("GET /health"), T0, RNG) is ADMIT
    d = t.admit(req(), T0, RNG)
    assert d.kind == "reject" and d.retry_after_ms == 2_000
    assert d.applied == APPLIED_CODES["shed"]


def test_wildcard_endpoint_applies_everywhere() -> None:
    t = table(make_directive(shed(), Scope(tenant="noisy"), issued_ms=T0))
    assert t.admit(req("GET /anything", tenant="noisy"), T0, RNG).kind == "reject"
    assert t.admit(req("GET /anything", tenant="calm"), T0, RNG) is ADMIT
    t2 = table(
        make_directive(shed(), Scope(tenant="noisy"), issued_ms=T0),
        make_directive(Action("defer", hold_ms=10), Scope(endpoint=EP), issued_ms=T0),
    )
    assert t2.admit(req(EP, tenant="noisy"), T0, RNG).kind == "reject"
    assert t2.admit(req("GET /x", tenant="noisy"), T0, RNG).kind == "reject"
    assert t2.admit(req(EP, tenant="calm"), T0, RNG).kind == "defer"


@pytest.mark.parametrize(
    ("scope", "request_kw", "applies"),
    [
        (Scope(endpoint=EP, tenant="t1"), {"tenant": "t1"}, True),
        (Scope(endpoint=EP, tenant="t1"), {"tenant": "t2"}, False),
        (Scope(endpoint=EP, agent_id="a1"), {"agent_id": "a1"}, True),
        (Scope(endpoint=EP, agent_id="a1"), {"agent_id": "a2"}, False),
        (Scope(endpoint=EP, min_priority=5), {"priority": 4}, False),
        (Scope(endpoint=EP, min_priority=5), {"priority": 5}, True),
        (Scope(endpoint=EP, min_priority=5), {"priority": 9}, True),
        (Scope(endpoint=EP, min_attempt=1), {"attempt": 0}, False),
        (Scope(endpoint=EP, min_attempt=1), {"attempt": 3}, True),
        (Scope(endpoint=EP, min_depth=2), {"depth": 1}, False),
        (Scope(endpoint=EP, min_depth=2), {"depth": 2}, True),
        (Scope(endpoint=EP, tenant="t1", min_attempt=1), {"tenant": "t1", "attempt": 0}, False),
        (Scope(endpoint=EP, tenant="t1", min_attempt=1), {"tenant": "t1", "attempt": 1}, True),
    ],
)
def test_scope_filters(scope: Scope, request_kw: dict[str, int | str], applies: bool) -> None:
    t = table(make_directive(shed(), scope, issued_ms=T0))
    kw: dict[str, object] = {"tenant": "", "agent_id": "", **request_kw}
    d = t.admit(req(**kw), T0, RNG)  # type: ignore[arg-type]
    assert (d.kind == "reject") is applies


def test_most_specific_first_agent_tenant_endpoint() -> None:
    t = table(
        make_directive(Action("defer", hold_ms=100), Scope(endpoint=EP), id="ep", issued_ms=T0),
        make_directive(shed(), Scope(endpoint=EP, tenant="t1"), id="tenant", issued_ms=T0),
        make_directive(
            Action("reroute", target="http://backup"), Scope(endpoint=EP, agent_id="a1"),
            id="agent", issued_ms=T0,
        ),
    )
    a1 = t.admit(req(tenant="t1", agent_id="a1"), T0, RNG)
    assert (a1.kind, a1.target, a1.directive_id) == ("reroute", "http://backup", "agent")
    a2 = t.admit(req(tenant="t1", agent_id="a2"), T0, RNG)
    assert (a2.kind, a2.directive_id) == ("reject", "tenant")
    other = t.admit(req(tenant="t2", agent_id="a3"), T0, RNG)
    assert (other.kind, other.delay_ms, other.directive_id) == ("defer", 100, "ep")
    assert [d.id for d in t.directives()] == ["agent", "tenant", "ep"]


def test_most_specific_defer_decides_the_hold() -> None:
    t = table(
        make_directive(Action("defer", hold_ms=100), Scope(endpoint=EP), id="ep", issued_ms=T0),
        make_directive(
            Action("defer", hold_ms=7), Scope(endpoint=EP, tenant="t1"), id="t", issued_ms=T0
        ),
    )
    assert t.admit(req(tenant="t1"), T0, RNG) == Decision(
        "defer", delay_ms=7, directive_id="t", applied=APPLIED_CODES["defer"]
    )


def test_token_bucket_rate_and_burst_are_exact() -> None:
    d = make_directive(Action("throttle", rate_per_s=10.0, burst=5.0), issued_ms=T0)
    t = table(d)
    kinds = [t.admit(req(), T0, RNG).kind for _ in range(7)]
    assert kinds == ["admit"] * 5 + ["reject"] * 2
    r = t.admit(req(), T0, RNG)
    assert r.retry_after_ms == 100 and r.directive_id == d.id
    assert t.admit(req(), T0 + 99, RNG).retry_after_ms == 1
    assert t.admit(req(), T0 + 100, RNG).kind == "admit"
    assert t.admit(req(), T0 + 100, RNG).kind == "reject"
    # Steady state: one request per ms for 10 s admits exactly rate × time.
    admitted = sum(
        t.admit(req(), T0 + 100 + ms, RNG).kind == "admit" for ms in range(1, 10_001)
    )
    assert admitted == 100
    # Idle refills to the burst, not beyond.
    later = T0 + 30_000
    assert [t.admit(req(), later, RNG).kind for _ in range(6)] == ["admit"] * 5 + ["reject"]


def test_throttle_uses_this_gateways_share() -> None:
    action = Action(
        "throttle", rate_per_s=100.0, burst=4.0, shares=(("gw-a", 0.25), ("gw-b", 0.75)),
        default_share=0.5,
    )
    d = make_directive(action, issued_ms=T0)
    for gid, per_10s in (("gw-a", 250), ("gw-b", 750), ("gw-c", 500)):
        t = table(d, gateway_id=gid)
        burst = max(1, int(4 * action.share_for(gid)))
        admitted = sum(
            t.admit(req(), T0 + ms, RNG).kind == "admit" for ms in range(0, 10_000)
        )
        assert admitted == pytest.approx(per_10s + burst, abs=1), gid


def test_refresh_keeps_the_bucket_level_and_takes_the_new_rate() -> None:
    d = make_directive(Action("throttle", rate_per_s=10.0, burst=5.0), id="x", issued_ms=T0)
    t = table(d)
    for _ in range(5):
        t.admit(req(), T0, RNG)
    assert t.admit(req(), T0, RNG).kind == "reject"
    d2 = make_directive(
        Action("throttle", rate_per_s=1000.0, burst=5.0), id="x", issued_ms=T0 + 1
    )
    assert t.apply(d2, T0) == "refreshed"
    assert t.tokens("x", T0) == 0.0
    assert t.admit(req(), T0 + 1, RNG).kind == "admit"  # 1 ms at 1000/s = one token
    stale = make_directive(Action("shed"), id="x", issued_ms=T0 - 5)
    assert t.apply(stale, T0) == "stale"


def test_rejected_by_a_less_specific_directive_takes_no_token() -> None:
    t = table(
        make_directive(
            Action("throttle", rate_per_s=1.0, burst=2.0), Scope(endpoint=EP, tenant="t1"),
            id="thr", issued_ms=T0,
        ),
        make_directive(
            Action("shed", fraction=1.0, retry_after_ms=5), Scope(endpoint=EP, min_attempt=1),
            id="shed", issued_ms=T0,
        ),
    )
    assert t.admit(req(tenant="t1", attempt=1), T0, RNG).directive_id == "shed"
    assert t.tokens("thr", T0) == 2.0
    assert t.admit(req(tenant="t1", attempt=0), T0, RNG) is ADMIT
    assert t.tokens("thr", T0) == 1.0


def test_throttle_then_defer_takes_a_token_and_defers() -> None:
    t = table(
        make_directive(
            Action("throttle", rate_per_s=1.0, burst=1.0), Scope(endpoint=EP, tenant="t1"),
            id="thr", issued_ms=T0,
        ),
        make_directive(Action("defer", hold_ms=50), Scope(endpoint=EP), id="def", issued_ms=T0),
    )
    assert t.admit(req(tenant="t1"), T0, RNG).kind == "defer"
    assert t.admit(req(tenant="t1"), T0, RNG).kind == "reject"


@pytest.mark.parametrize("make_rng", [lambda: random.Random(42), lambda: np.random.default_rng(42)])
def test_defer_jitter_is_uniform(make_rng: object) -> None:
    hold, jitter = 200, 1_000
    t = table(make_directive(Action("defer", hold_ms=hold, jitter_ms=jitter), issued_ms=T0))
    rng = make_rng()  # type: ignore[operator]
    delays = np.array([t.admit(req(), T0, rng).delay_ms for _ in range(5_000)])
    assert delays.min() >= hold and delays.max() <= hold + jitter
    # Discrete uniform on {0..jitter}: spread each integer over its unit cell, then KS vs U(0,1).
    u = (delays - hold + np.random.default_rng(1).random(delays.size)) / (jitter + 1)
    assert stats.kstest(u, "uniform").pvalue > 0.01


def test_shed_fraction_and_priority_scope() -> None:
    t = table(
        make_directive(
            Action("shed", fraction=0.3, retry_after_ms=500), Scope(endpoint=EP, min_priority=5),
            issued_ms=T0,
        )
    )
    rng = random.Random(3)
    n = 10_000
    rejected = sum(t.admit(req(priority=7), T0, rng).kind == "reject" for _ in range(n))
    assert abs(rejected - 0.3 * n) < 4 * (n * 0.3 * 0.7) ** 0.5
    assert all(t.admit(req(priority=4), T0, rng) is ADMIT for _ in range(100))


def test_expiry_release_and_expired_on_arrival() -> None:
    d = make_directive(shed(), id="e", issued_ms=T0, ttl_ms=1_000)
    t = table(d)
    assert t.admit(req(), T0 + 999, RNG).kind == "reject"
    assert t.admit(req(), T0 + 1_000, RNG) is ADMIT
    assert t.empty and len(t) == 0  # purged lazily by admit
    assert t.apply(d, T0 + 1_000) == "expired"
    t = table(d)
    release = make_directive(Action("release"), id="e", issued_ms=T0 + 10)
    assert t.apply(release, T0 + 10) == "released"
    assert t.admit(req(), T0 + 10, RNG) is ADMIT
    assert t.apply(release, T0 + 10) == "unknown_release"


def test_purge_tracks_the_next_expiry() -> None:
    t = table(
        make_directive(shed(), id="a", issued_ms=T0, ttl_ms=100),
        make_directive(shed(), Scope(endpoint="GET /b"), id="b", issued_ms=T0, ttl_ms=200),
    )
    assert t.next_expiry_ms == T0 + 100
    assert t.purge(T0 + 150) == 1
    assert t.next_expiry_ms == T0 + 200 and "b" in t and "a" not in t
    assert t.in_force(T0 + 150) == 1


def test_reroute_decision() -> None:
    t = table(make_directive(Action("reroute", target="eu-2"), issued_ms=T0))
    d = t.admit(req(), T0, RNG)
    assert d.kind == "reroute" and d.target == "eu-2" and d.applied == APPLIED_CODES["reroute"]
    assert not d.admitted and ADMIT.admitted


def test_throttle_retry_after_never_outlives_the_directive() -> None:
    t = table(make_directive(Action("throttle", rate_per_s=0.001, burst=1.0), issued_ms=T0,
                             ttl_ms=5_000))
    assert t.admit(req(), T0, RNG) is ADMIT
    assert t.admit(req(), T0 + 1_000, RNG).retry_after_ms == 4_000
    zero = table(make_directive(Action("throttle", rate_per_s=0.0), issued_ms=T0, ttl_ms=800))
    assert zero.admit(req(), T0, RNG) is ADMIT  # the minimum bucket of one token
    assert zero.admit(req(), T0 + 300, RNG).retry_after_ms == 500


def test_pacing_throttle_holds_until_the_token_is_due_then_rejects() -> None:
    """``max_delay_ms`` turns the bucket into a bounded queue (GCRA): requests over the rate wait
    for their token in order, 1/rate apart; one whose token is further away than the bound is
    rejected with the time until it, as a plain throttle would."""
    pace = Action("throttle", rate_per_s=10.0, burst=1.0, max_delay_ms=350)
    t = table(make_directive(pace, Scope(endpoint=EP), issued_ms=T0))
    first = t.admit(req(), T0, RNG)
    assert first.kind == "admit"
    delays = [t.admit(req(), T0, RNG) for _ in range(3)]
    assert [d.kind for d in delays] == ["defer", "defer", "defer"]
    assert [d.delay_ms for d in delays] == [100, 200, 300]
    assert all(d.applied == APPLIED_CODES["throttle"] for d in delays)
    over = t.admit(req(), T0, RNG)
    assert over.kind == "reject" and over.retry_after_ms == 400
    # time passes: the queue drains at the rate, and the next request waits less
    later = t.admit(req(), T0 + 250, RNG)
    assert later.kind == "defer" and later.delay_ms == 150


def test_pacing_throttle_at_rate_zero_rejects() -> None:
    stop = Action("throttle", rate_per_s=0.0, burst=1.0, max_delay_ms=5_000)
    t = table(make_directive(stop, Scope(endpoint=EP), issued_ms=T0))
    assert t.admit(req(), T0, RNG).kind == "admit"  # the burst's one token
    d = t.admit(req(), T0, RNG)
    assert d.kind == "reject" and d.applied == APPLIED_CODES["throttle"]


def test_pacing_wait_and_defer_hold_take_the_longer() -> None:
    pace = Action("throttle", rate_per_s=10.0, burst=1.0, max_delay_ms=1_000)
    hold = Action("defer", hold_ms=150, jitter_ms=0)
    t = table(
        make_directive(pace, Scope(endpoint=EP), issued_ms=T0),
        make_directive(hold, Scope(endpoint=EP, min_attempt=1), issued_ms=T0),
    )
    assert t.admit(req(attempt=1), T0, RNG).delay_ms == 150  # token at once; the hold decides
    assert t.admit(req(attempt=1), T0, RNG).delay_ms == 150  # token in 100 ms < hold
    paced = t.admit(req(attempt=1), T0, RNG)
    assert paced.delay_ms == 200 and paced.applied == APPLIED_CODES["throttle"]
