"""Each baseline policy against its published definition and vectors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from sim.backoff import ceiling_ms, full_jitter_ms, retry_delay_ms
from sim.policies.adaptive_concurrency import DEFAULTS, GradientController, gradient_update
from sim.policies.client_throttle import SlidingCounts, throttle_probability
from sim.policies.retry_budget import retry_budget_limit
from sim.policies.token_bucket import TokenBucket
from sim.rand import RandomStream
from sim.scenario import RetrySpec


def test_sre_adaptive_throttling_vector() -> None:
    # Google SRE book, "Handling Overload": 100 requests, 40 accepts, K = 2 -> p = 20/101.
    assert throttle_probability(100, 40, 2.0) == pytest.approx(0.198, abs=5e-4)
    assert throttle_probability(100, 40, 2.0) == pytest.approx(20 / 101)
    assert throttle_probability(100, 50, 2.0) == 0.0  # accepts*K >= requests: never throttle
    assert throttle_probability(0, 0, 2.0) == 0.0


def test_sliding_counts_forget_after_window() -> None:
    c = SlidingCounts(window_s=120)
    for t in range(0, 10_000, 100):
        c.add_request(t)
    c.add_accept(500)
    assert (c.requests, c.accepts) == (100, 1)
    c.add_request(125_000)  # the window is seconds 6..125 now
    assert (c.requests, c.accepts) == (41, 0)
    c.add_request(135_000)  # seconds 0..9 are all out of the window
    assert (c.requests, c.accepts) == (2, 0)


def test_aws_full_jitter_bounds_and_distribution() -> None:
    rng = RandomStream.from_seed(1)
    base, cap = 100, 10_000
    for n in range(12):
        ceiling = min(cap, base * 2**n)
        xs = np.array([full_jitter_ms(base, cap, n, rng) for _ in range(2000)])
        assert xs.min() >= 0 and xs.max() < ceiling
        # uniform on [0, ceiling): Kolmogorov-Smirnov against U(0, ceiling)
        p = stats.kstest(xs / ceiling, "uniform").pvalue
        assert p > 1e-3, (n, p)
        assert xs.mean() == pytest.approx(ceiling / 2, rel=0.06)


def test_backoff_variants() -> None:
    rng = RandomStream.from_seed(2)

    def spec(backoff: str, jitter: str) -> RetrySpec:
        return RetrySpec(5, backoff, 100, 1000, jitter, True, True, 1000)

    assert ceiling_ms("exponential", 100, 1000, 3) == 800
    assert ceiling_ms("exponential", 100, 1000, 4) == 1000
    assert ceiling_ms("fixed", 100, 1000, 7) == 100
    assert retry_delay_ms(spec("none", "full"), 3, 0, rng) == 0
    assert retry_delay_ms(spec("exponential", "none"), 2, 0, rng) == 400
    for n in range(6):
        c = min(1000, 100 * 2**n)
        eq = retry_delay_ms(spec("exponential", "equal"), n, 0, rng)
        assert c // 2 <= eq <= c
    prev = 0
    for n in range(20):
        d = retry_delay_ms(spec("exponential", "decorrelated"), n, prev, rng)
        assert 100 <= d <= 1000
        assert d <= max(100, prev) * 3
        prev = d


def test_envoy_retry_budget_min_and_percent() -> None:
    assert retry_budget_limit(0, 20.0, 3) == 3  # the minimum concurrency is always allowed
    assert retry_budget_limit(5, 20.0, 3) == 3
    assert retry_budget_limit(100, 20.0, 3) == 20  # 20% of 100 active requests
    assert retry_budget_limit(1000, 20.0, 3) == 200


def test_envoy_gradient_formula() -> None:
    # gradient = minRTT·(1+buffer)/sampleRTT; limit = gradient·limit + sqrt(gradient·limit)
    new, g = gradient_update(100, 100.0, 125.0, 0.25, 3, 1000)
    assert g == pytest.approx(1.0)
    assert new == 110  # 100 + sqrt(100)
    new, g = gradient_update(100, 100.0, 250.0, 0.25, 3, 1000)
    assert g == pytest.approx(0.5)
    assert new == int(50 + math.sqrt(50))
    new, g = gradient_update(100, 100.0, 10.0, 0.25, 3, 1000)
    assert g == 2.0  # clamped to [0.5, 2]
    assert new == int(200 + math.sqrt(200))
    assert gradient_update(2, 100.0, 10_000.0, 0.25, 3, 1000)[0] == 3  # clamp to the minimum
    assert gradient_update(900, 100.0, 10.0, 0.25, 3, 1000)[0] == 1000  # and to the maximum


def test_gradient_controller_measures_min_rtt_then_grows() -> None:
    ctl = GradientController(dict(DEFAULTS), RandomStream.from_seed(3))
    assert ctl.in_min_rtt and ctl.limit == 3
    now = 0
    for _ in range(50):  # 50 samples of 100 ms at the pinned concurrency
        assert ctl.try_acquire(now)
        now += 10
        ctl.release(now, 100)
    assert not ctl.in_min_rtt and ctl.min_rtt_ms == 100.0
    limits = []
    for _ in range(20):  # sampleRTT == minRTT: the limit grows by its square root each window
        now += 100
        assert ctl.try_acquire(now)
        ctl.release(now, 100)
        limits.append(ctl.limit)
    assert limits[-1] > 50
    assert all(b >= a for a, b in itertools.pairwise(limits))


def test_token_bucket() -> None:
    b = TokenBucket(rate_per_s=10.0, burst=2.0)
    assert b.take(0) == 0 and b.take(0) == 0
    assert b.take(0) == 100  # next token in 100 ms
    assert b.take(100) == 0
    assert b.take(150) == 50
