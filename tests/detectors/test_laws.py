"""The control laws as plain arithmetic (``detectors/laws.py``), in the concurrency-limits style:
known inputs, the number the law must give."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors import laws


def a(*xs: float) -> np.ndarray:
    return np.array(xs, dtype=np.float64)


def test_retry_budget_keeps_rho_times_one_plus_r_under_one_minus_margin() -> None:
    rho = a(0.0, 0.5, 0.7, 0.85, 1.2)
    r = laws.retry_budget(rho, margin=0.15, r_max=0.5)
    assert r.tolist() == pytest.approx([0.5, 0.5, 0.85 / 0.7 - 1.0, 0.0, 0.0])
    assert np.all(rho[1:4] * (1.0 + r[1:4]) <= 0.85 + 1e-12)


def test_capacity_measured_only_while_queued() -> None:
    got = laws.capacity_update(a(0.0, 100.0, 100.0), a(60.0, 60.0, 60.0),
                               np.array([True, True, False]), gain=0.25)
    # unknown -> the measurement; queued -> a quarter of the way; no queue -> kept
    assert got.tolist() == pytest.approx([60.0, 90.0, 100.0])


def test_demonstrated_capacity_is_a_maximum_that_halves_per_memory() -> None:
    decay = laws.decay_per_step(100, 10_000)
    assert decay ** 100 == pytest.approx(0.5)
    d = a(100.0)
    for _ in range(100):  # 10 s with nothing served
        d = laws.demonstrated_update(d, a(0.0), decay)
    assert float(d[0]) == pytest.approx(50.0)
    assert float(laws.demonstrated_update(d, a(70.0), decay)[0]) == 70.0


def test_arrival_ratio_inverts_the_reported_wait_slope() -> None:
    # FIFO queue growing at rho - 1 s/s: completions report a wait growing at 1 - 1/rho
    for rho in (1.0, 1.5, 2.0, 5.0):
        slope = 1.0 - 1.0 / rho
        assert float(laws.arrival_ratio(a(slope))[0]) == pytest.approx(rho)


def test_floor_relearns_a_persistent_slowdown_in_the_documented_time() -> None:
    relearn_ms, step_ms = 30_000, 100
    growth = laws.floor_growth(step_ms, relearn_ms)
    floor = a(400.0)
    steps = 0
    while float(floor[0]) < 640.0 - 1e-9:
        floor = laws.floor_update(floor, a(640.0), np.array([True]), growth)
        steps += 1
    bound_ms = laws.relearn_time_ms(1.6, relearn_ms)
    assert bound_ms == pytest.approx(relearn_ms * math.log2(1.6))
    assert steps * step_ms == pytest.approx(bound_ms, abs=step_ms)
    # a faster answer is the new floor at once; no evidence, no change
    assert float(laws.floor_update(floor, a(300.0), np.array([True]), growth)[0]) == 300.0
    assert float(laws.floor_update(floor, a(10.0), np.array([False]), growth)[0]) == 640.0
    assert laws.relearn_time_ms(0.8, relearn_ms) == 0.0


def test_log_spread_reads_a_lognormal_sigma_from_its_median_and_low_quantile() -> None:
    # median 200, 20 % point 200 x exp(-0.8416 x 1.1): sigma 1.1
    low = 200.0 * math.exp(-0.8416212 * 1.1)
    assert laws.log_spread(np.array([200.0]), np.array([low]), 0.2)[0] == pytest.approx(1.1)
    assert laws.log_spread(np.array([0.0]), np.array([low]), 0.2)[0] == 0.0  # unknown


def test_quantile_se_shrinks_with_the_square_root_of_the_answers() -> None:
    # sqrt(0.2 x 0.8) / phi(z(0.2)) = 0.4 / 0.2800 = 1.4287; sigma 1.1 over 12 answers: 0.4537
    se = laws.quantile_se(np.array([1.1, 1.1, 1.1]), np.array([12.0, 48.0, 0.0]), 0.2)
    assert se[0] == pytest.approx(1.1 * 1.4287 / math.sqrt(12), rel=1e-3)
    assert se[1] == pytest.approx(se[0] / 2)
    assert se[2] == pytest.approx(1.1 * 1.4287, rel=1e-3)  # no answers: that of one
