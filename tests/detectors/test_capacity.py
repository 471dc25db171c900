"""The live service quantities (``detectors/capacity.py``): measured from windows of attempts,
with no learned normal, so they exist at cold start and follow a persistent change in bounded
time. Windows are built from real events through the aggregation code."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from detectors import laws
from detectors.aggregate import event_columns_matrix
from detectors.capacity import CapacityConfig, CapacityTracker
from detectors.features import core
from detectors.layout import I64
from schemas.columns import APPLIED_CODES, STATUS_OK, STATUS_TIMEOUT, EventColumns

BUCKET_MS, SHORT_MS, FAST_MS = 100, 1_000, 300


def window(ok_ms: list[int], timeouts_ms: list[int] = (),  # type: ignore[assignment]
           throttled: bool = False) -> I64:
    """One key's window sums: successes with the given latencies, timeouts after the given waits
    (``throttled``: every attempt waited for a cap at its gateway)."""
    lat = [*ok_ms, *timeouts_ms]
    status = [STATUS_OK] * len(ok_ms) + [STATUS_TIMEOUT] * len(timeouts_ms)
    cols: dict[str, list[int]] = {"latency_ms": lat, "status": status}
    if throttled:
        cols["applied"] = [APPLIED_CODES["throttle"]] * len(lat)
    ev = EventColumns.from_arrays(cols, n=len(lat))
    return event_columns_matrix(ev).sum(axis=0, keepdims=True)


def step(tr: CapacityTracker, short: I64, fast: I64 | None = None, mid: I64 | None = None,
         memory: I64 | None = None) -> dict[str, float]:
    f = core(short, SHORT_MS)
    out = tr.update(f, short, short if fast is None else fast, short if mid is None else mid,
                    short if memory is None else memory, np.ones(1, dtype=bool))
    return {k: float(v[0]) for k, v in out.items()}


def steps(tr: CapacityTracker, n: int, short: I64, **kw: I64) -> dict[str, float]:
    out: dict[str, float] = {}
    for _ in range(n):
        out = step(tr, short, **kw)
    return out


def tracker(**kw: int) -> CapacityTracker:
    return CapacityTracker(CapacityConfig(**kw), BUCKET_MS)


SETTLE = CapacityConfig().settle_ms // BUCKET_MS  # evaluations before the floor is measured


def spread(median_ms: float, n: int) -> list[int]:
    """``n`` answer times spread over 0.5x..2x ``median_ms`` (log-uniform)."""
    return [int(x) for x in median_ms * np.geomspace(0.5, 2.0, n)]


def test_cold_start_inside_an_incident_measures_capacity_queue_and_patience() -> None:
    """No history at all: once the key has answered for ``settle_ms`` its low latency quantile is
    the no-load floor; a window whose answers all take 800 ms longer is a queue (the quick ones
    wait too); timeouts tell the clients' patience; while queued, what is served is the
    capacity."""
    tr = tracker()
    first = steps(tr, SETTLE + 1, window(spread(400, 40)))
    assert first["latency_floor_ms"] == pytest.approx(400 * 2 ** (-0.6), rel=0.2)  # the 20 % point
    assert first["queued"] == 0.0
    busy = step(tr, window([x + 800 for x in spread(400, 30)], [2_000] * 10))
    assert busy["queued"] == 1.0
    assert busy["observed_wait_ms"] == pytest.approx(800, rel=0.3)
    assert busy["patience_ms"] == 2_000.0
    assert busy["timeout_fraction"] == pytest.approx(0.25)
    assert busy["capacity_per_s"] == pytest.approx(30.0, rel=0.05)  # the first measurement


def test_the_first_answers_do_not_set_the_floor() -> None:
    """A key's first completions are its quick requests (the slow ones complete later): the floor
    is measured only after ``settle_ms``, so they cannot make later answers read as a queue."""
    tr = tracker()
    early = step(tr, window([100] * 40))
    assert early["latency_floor_ms"] == 0.0 and early["queued"] == 0.0
    later = steps(tr, SETTLE + 5, window([400] * 40))
    assert later["latency_floor_ms"] == pytest.approx(400, rel=0.2)
    assert later["queued"] == 0.0


def test_a_collapse_that_answers_nothing_reads_as_a_queue_of_patience() -> None:
    """Every attempt times out (a metastable collapse: the service serves only dead work): no
    answer measures the wait, but the queue holds at least the clients' patience, and the
    capacity falls back on what was demonstrably served (timeouts arrive at the admitted rate,
    not at the capacity)."""
    tr = tracker()
    steps(tr, SETTLE + 1, window([400] * 40))
    out = step(tr, window([], [2_000] * 40))
    assert out["queued"] == 1.0
    assert out["observed_wait_ms"] == pytest.approx(2_000 - out["latency_floor_ms"])
    assert out["throughput_per_s"] == 0.0
    assert out["capacity_per_s"] == pytest.approx(40.0, rel=0.05)


def test_a_measured_queue_sets_the_capacity_even_below_what_was_served_before() -> None:
    """A service that got slower serves less than it did a minute ago: while its queue stands
    and it answers, the capacity is what it serves now, not the demonstrated maximum."""
    tr = tracker()
    steps(tr, SETTLE + 1, window([400] * 90))
    slow = steps(tr, 30, window([2_400] * 20))
    assert slow["queued"] == 1.0
    assert slow["capacity_per_s"] == pytest.approx(20.0, rel=0.05)


def test_without_a_queue_capacity_never_falls_below_what_was_demonstrably_served() -> None:
    tr = tracker()
    steps(tr, SETTLE + 1, window([400] * 90))
    quiet = step(tr, window([400] * 20))  # demand fell; the service did not get smaller
    assert quiet["queued"] == 0.0
    assert quiet["capacity_per_s"] >= 90.0 * laws.decay_per_step(BUCKET_MS, 10_000) - 1e-9


def test_timeouts_quicker_than_the_answers_are_not_the_clients_patience() -> None:
    tr = tracker()
    out = steps(tr, SETTLE + 1, window([400] * 40, [150] * 5))
    assert out["patience_ms"] == 0.0


def test_when_most_answers_are_timeouts_their_wait_is_the_patience() -> None:
    """Cold start inside a collapse, with two kinds of clients: most give up after 1.8 s, a few
    patient ones get answers after 3.5 s. The timeouts are quicker than most answers, but they
    are most of what the clients waited for: they are the typical answer, not a heavy tail's
    stragglers, and the queue holds at least that patience of work."""
    tr = tracker()
    out = steps(tr, SETTLE + 1, window([3_500] * 8, [1_800] * 30))
    assert out["patience_ms"] == 1_800.0
    assert out["queued"] == 1.0


def lognormal(median_ms: float, sigma: float, n: int) -> list[int]:
    """``n`` answer times at the quantiles of a log-normal (deterministic, no sampling luck)."""
    z = [NormalDist().inv_cdf((i + 0.5) / n) for i in range(n)]
    return [int(median_ms * math.exp(sigma * x)) for x in z]


def test_a_dozen_heavy_tailed_answers_do_not_make_a_queue() -> None:
    """Heavy-tailed answers (sigma 1.1: context lengths that vary 100x): the 20 % point of a
    dozen of them moves by half its value by chance (one standard error is ~0.46 in log), so a
    1.8x shift read from 12 answers is noise; the same shift over 400 answers is a queue."""
    tr = tracker()
    calm = window(lognormal(200, 1.1, 400))
    steps(tr, SETTLE + 1, calm, fast=calm, mid=calm)
    few = window([int(1.8 * x) for x in lognormal(200, 1.1, 12)])
    assert step(tr, few, fast=few, mid=calm)["queued"] == 0.0
    many = window([int(1.8 * x) for x in lognormal(200, 1.1, 400)])
    out = step(tr, many, fast=many, mid=calm)
    assert out["queued"] == 1.0
    assert out["observed_wait_ms"] == pytest.approx(0.8 * out["latency_floor_ms"], rel=0.1)


def test_a_benign_permanent_slowdown_is_the_new_floor_within_the_bound() -> None:
    """The model gets 1.6x slower for good and nothing queues: it reads as a queue only until the
    floor has re-learnt it, ``relearn_ms x log2(1.6)`` of event time, and never after."""
    tr = tracker(relearn_ms=30_000)
    steps(tr, SETTLE + 20, window([400] * 40))
    bound_evals = int(np.ceil(laws.relearn_time_ms(1.6, 30_000) / BUCKET_MS))
    queued = [step(tr, window([640] * 40))["queued"] for _ in range(bound_evals + 50)]
    assert not any(queued[bound_evals + 1 :])
    fresh = steps(tracker(), SETTLE + 1, window([640] * 40))  # one that only knew the new model
    assert step(tr, window([640] * 40))["latency_floor_ms"] == pytest.approx(
        fresh["latency_floor_ms"], rel=0.01
    )


def test_a_queue_behind_a_binding_cap_does_not_become_the_floor() -> None:
    """A cap set too high queues requests in the service: their answers take twice the no-load
    time, for longer than the floor would take to re-learn a real slowdown. While the cap holds
    requests back at the gateways, the floor stays and the wait keeps reading as a queue (a
    floor learnt from it would size a larger cap, which queues more: a creeping loop); without
    the cap the same answers become the new floor within the bound."""
    relearn_evals = int(np.ceil(laws.relearn_time_ms(2.0, 30_000) / BUCKET_MS))
    capped, free = tracker(relearn_ms=30_000), tracker(relearn_ms=30_000)
    for tr in (capped, free):
        before = steps(tr, SETTLE + 20, window([400] * 40))["latency_floor_ms"]
    held = steps(capped, relearn_evals + 50, window([800] * 40, throttled=True))
    assert held["latency_floor_ms"] == before
    assert held["queued"] == 1.0
    learnt = steps(free, relearn_evals + 50, window([800] * 40))
    fresh = steps(tracker(), SETTLE + 1, window([800] * 40))  # one that only knew the slow answers
    assert learnt["latency_floor_ms"] == pytest.approx(fresh["latency_floor_ms"], rel=0.01)
    assert learnt["queued"] == 0.0


def test_a_growing_queue_reads_as_arrivals_above_capacity() -> None:
    """Completions report the wait of requests that arrived a wait ago: a wait that grows by
    ``s`` ms per ms means arrivals ``rho = 1 / (1 - s)`` times the capacity (measured from the
    trend of the wait), and the wait ahead of a new request is larger than the one reported."""
    tr = tracker()
    steps(tr, SETTLE + 1, window([400] * 40))
    s = 0.2  # 20 ms more wait per 100 ms evaluation
    out: dict[str, float] = {}
    for i in range(100):
        out = step(tr, window([400 + int(s * BUCKET_MS * i)] * 40))
    assert out["queued"] == 1.0
    assert out["arrival_ratio"] == pytest.approx(1 / (1 - s), rel=0.1)
    assert out["queue_wait_ms"] > out["observed_wait_ms"]
    # a standing queue that stops growing: arrivals at the capacity
    for _ in range(150):
        out = step(tr, window([400 + int(s * BUCKET_MS * 100)] * 40))
    assert out["arrival_ratio"] == pytest.approx(1.0, abs=0.02)


def test_rows_follow_the_window_store() -> None:
    tr = tracker()
    both = np.concatenate([window([400] * 40), window([50] * 40)])
    f = core(both, SHORT_MS)
    for _ in range(SETTLE + 1):
        tr.update(f, both, both, both, both, np.ones(2, dtype=bool))
    tr.keep(np.array([False, True]))
    assert len(tr) == 1 and float(tr.floor_ms[0]) == pytest.approx(50, rel=0.2)
    tr.grow(3)
    assert len(tr) == 3 and float(tr.floor_ms[2]) == 0.0
