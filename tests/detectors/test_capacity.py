"""The live service quantities (``detectors/capacity.py``): measured from windows of attempts,
with no learned normal, so they exist at cold start and follow a persistent change in bounded
time. Windows are built from real events through the aggregation code."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import laws
from detectors.aggregate import event_columns_matrix
from detectors.capacity import CapacityConfig, CapacityTracker
from detectors.features import core
from detectors.layout import I64
from schemas.columns import STATUS_OK, STATUS_TIMEOUT, EventColumns

BUCKET_MS, SHORT_MS, FAST_MS = 100, 1_000, 300


def window(ok_ms: list[int], timeouts_ms: list[int] = ()) -> I64:  # type: ignore[assignment]
    """One key's window sums: successes with the given latencies, timeouts after the given waits."""
    lat = [*ok_ms, *timeouts_ms]
    status = [STATUS_OK] * len(ok_ms) + [STATUS_TIMEOUT] * len(timeouts_ms)
    ev = EventColumns.from_arrays({"latency_ms": lat, "status": status}, n=len(lat))
    return event_columns_matrix(ev).sum(axis=0, keepdims=True)


def step(tr: CapacityTracker, short: I64, fast: I64 | None = None,
         memory: I64 | None = None) -> dict[str, float]:
    f = core(short, SHORT_MS)
    out = tr.update(f, short, short if fast is None else fast, short if memory is None else memory,
                    np.ones(1, dtype=bool))
    return {k: float(v[0]) for k, v in out.items()}


def tracker(**kw: int) -> CapacityTracker:
    return CapacityTracker(CapacityConfig(**kw), BUCKET_MS, SHORT_MS, FAST_MS)


def test_cold_start_inside_an_incident_measures_capacity_queue_and_patience() -> None:
    """No history at all: the first window gives the no-load latency; a window whose answers
    take three times as long is a queue; timeouts tell the clients' patience; the capacity is
    the larger of the measurement while queued (successes per second) and what was demonstrably
    answered lately (40/s in the first window, decaying by a memory's half-life)."""
    tr = tracker()
    first = step(tr, window([400] * 40))
    assert first["latency_floor_ms"] == pytest.approx(400, rel=0.2)
    assert first["queued"] == 0.0
    busy = step(tr, window([1_200] * 30, [2_000] * 10))
    assert busy["queued"] == 1.0
    assert busy["observed_wait_ms"] == pytest.approx(800, rel=0.3)
    assert busy["patience_ms"] == 2_000.0
    assert busy["timeout_fraction"] == pytest.approx(0.25)
    assert busy["capacity_per_s"] == pytest.approx(40.0, rel=0.01)


def test_a_collapse_that_answers_nothing_reads_as_a_queue_of_patience() -> None:
    """Every attempt times out (a metastable collapse: the service serves only dead work): no
    answer measures the wait, but the queue holds at least the clients' patience."""
    tr = tracker()
    step(tr, window([400] * 40))
    out = step(tr, window([], [2_000] * 40))
    assert out["queued"] == 1.0
    assert out["observed_wait_ms"] == pytest.approx(2_000 - out["latency_floor_ms"])
    assert out["throughput_per_s"] == 0.0  # timeouts arrive at the admitted rate: no measurement


def test_capacity_never_falls_below_what_was_demonstrably_served() -> None:
    tr = tracker()
    step(tr, window([400] * 90))
    queued_low = step(tr, window([1_500] * 20))  # a (mis)read queue serving little
    assert queued_low["queued"] == 1.0
    assert queued_low["capacity_per_s"] >= 90.0 * laws.decay_per_step(BUCKET_MS, 10_000) - 1e-9


def test_a_benign_permanent_slowdown_is_the_new_floor_within_the_bound() -> None:
    """The model gets 1.6x slower for good and nothing queues: it reads as a queue only until the
    floor has re-learnt it, ``relearn_ms x log2(1.6)`` of event time, and never after."""
    tr = tracker(relearn_ms=30_000)
    for _ in range(20):
        step(tr, window([400] * 40))
    bound_evals = int(np.ceil(laws.relearn_time_ms(1.6, 30_000) / BUCKET_MS))
    queued = [step(tr, window([640] * 40))["queued"] for _ in range(bound_evals + 50)]
    assert not any(queued[bound_evals + 1 :])
    assert step(tr, window([640] * 40))["latency_floor_ms"] == pytest.approx(640, rel=0.2)


def test_the_wait_a_new_request_faces_scales_the_reported_one_by_the_arrival_ratio() -> None:
    """Completions report the wait of requests that arrived a wait ago: in a queue growing fast
    (the fast window's answers much slower than the detection window's) the arrival ratio is
    above 1 and the wait ahead of a new request is larger than the one reported."""
    tr = tracker()
    step(tr, window([400] * 40))
    out = step(tr, window([900] * 40), fast=window([1_300] * 15))
    assert out["queued"] == 1.0
    assert out["arrival_ratio"] > 1.5
    assert out["queue_wait_ms"] > out["observed_wait_ms"]


def test_rows_follow_the_window_store() -> None:
    tr = tracker()
    f = core(np.concatenate([window([400] * 40), window([50] * 40)]), SHORT_MS)
    both = np.concatenate([window([400] * 40), window([50] * 40)])
    tr.update(f, both, both, both, np.ones(2, dtype=bool))
    tr.keep(np.array([False, True]))
    assert len(tr) == 1 and float(tr.floor_ms[0]) == pytest.approx(50, rel=0.2)
    tr.grow(3)
    assert len(tr) == 3 and float(tr.floor_ms[2]) == 0.0
