"""Traffic that stops is not queue saturation; a queue under load still is.

Events are stamped at completion: after a stop the last completions are the long-latency
stragglers, so latency rises while throughput falls. The saturation detector's load gate
(``load_ratio`` = fast completion rate / learned throughput x latency ratio: the work in the
system, Little's law) tells that apart from a queue, where work piles up.
"""

from __future__ import annotations

import heapq

import numpy as np
import pytest
from synth import EPOCH_MS, feed

from detectors.config import GovernorConfig
from detectors.errors import ConfigError
from detectors.governor import Governor
from detectors.scores import Saturation, SaturationConfig
from schemas.columns import STATUS_OK, STATUS_TIMEOUT, EventColumns
from schemas.directive import Directive
from streams.synthetic import steady_traffic

UNGATED = SaturationConfig(load_lo=0.0, load_hi=1e-9)  # the load gate always open


def run_until_quiet(gov: Governor, events: EventColumns, chunk: int = 10_000) -> list[Directive]:
    """Ingest in completion-order chunks, then advance past the last completion."""
    out: list[Directive] = []
    for lo in range(0, len(events), chunk):
        gov.ingest(events.take(np.arange(lo, min(lo + chunk, len(events)))))
        out += gov.advance().directives
    out += gov.advance(int((events.ts_ms + events.latency_ms).max()) + 5_000).directives
    return out


def saturation(ds: list[Directive]) -> list[Directive]:
    return [d for d in ds if d.reason.detector == "saturation"]


# --- traffic that stops ---------------------------------------------------------------------

# 10,000 attempts/s over 20 endpoints (the quietest still ~150/s), lognormal latencies with a
# tail (median 200 ms): the stragglers keep completing for seconds after the last start.
N, DURATION_MS = 200_000, 20_000


@pytest.mark.parametrize("seed", [1, 2])
def test_traffic_that_stops_gets_no_saturation_directive(seed: int) -> None:
    events = steady_traffic(N, EPOCH_MS, DURATION_MS, seed=seed)
    ds = saturation(run_until_quiet(Governor(), events))
    assert [(d.issued_ms - EPOCH_MS, d.scope.endpoint) for d in ds] == []


def test_the_stop_reads_as_saturation_without_the_load_gate() -> None:
    """The control: the same stop, load gate open, fires on many endpoints after the stop
    (so the test above does exercise the stragglers)."""
    events = steady_traffic(N, EPOCH_MS, DURATION_MS, seed=1)
    gov = Governor(GovernorConfig(saturation=UNGATED))
    ds = saturation(run_until_quiet(gov, events))
    assert ds and all(d.issued_ms >= EPOCH_MS + DURATION_MS for d in ds)
    assert len({d.scope.endpoint for d in ds}) >= 5


# --- a queue under load still fires -----------------------------------------------------------


def fifo_queue(kind: str, seed: int = 0, servers: int = 32) -> EventColumns:
    """One endpoint ``svc``: Poisson arrivals into a FIFO queue of ``servers`` servers
    (lognormal service, median 100 ms), half loaded for 20 s, then from 20 s:

    - ``overload``: arrivals ramp to 1.4 x capacity over 5 s (they cross it at +2.8 s);
    - ``slowdown``: the same arrivals, every service 5 x slower (capacity / 5: completions
      fall to ~40 % of normal while the queue grows).

    Client timeout 10 s; 30 s in all; emitted in completion order."""
    rng = np.random.default_rng(seed)
    t0, end = 20_000.0, 30_000.0
    capacity = servers / (0.1 * np.exp(0.3**2 / 2))  # completions/s at full use
    top = 1.4 * capacity
    t = np.sort(rng.uniform(0.0, end, rng.poisson(top * end / 1000.0)))
    rate = np.full(t.shape, 0.5 * capacity)
    if kind == "overload":
        rate += (top - 0.5 * capacity) * np.clip((t - t0) / 5_000.0, 0.0, 1.0) * (t >= t0)
    t = t[rng.random(t.shape[0]) < rate / top]  # thinning: Poisson arrivals at ``rate``
    service = 100.0 * np.exp(rng.normal(0.0, 0.3, t.shape[0]))
    if kind == "slowdown":
        service = np.where(t >= t0, 5.0 * service, service)
    free = [0.0] * servers
    latency = np.empty_like(t)
    for i in range(t.shape[0]):
        start = max(heapq.heappop(free), t[i])
        heapq.heappush(free, start + service[i])
        latency[i] = start + service[i] - t[i]
    status = np.where(latency > 10_000, STATUS_TIMEOUT, STATUS_OK)
    latency = np.minimum(latency, 10_000).astype(np.int64)
    ts = t.astype(np.int64)
    order = np.argsort(ts + latency, kind="stable")
    n = ts.shape[0]
    ids = np.array([f"r{i}" for i in range(n)], dtype=object)
    cols = {
        "ts_ms": EPOCH_MS + ts,
        "latency_ms": latency,
        "status": status,
        "endpoint": np.full(n, "svc", dtype=object),
        "tenant": np.array(["t0", "t1"], dtype=object)[rng.integers(0, 2, n)],
        "agent_id": np.array([f"a{i}" for i in range(20)], dtype=object)[rng.integers(0, 20, n)],
        "gateway_id": np.full(n, "gw0", dtype=object),
        "request_id": ids,
        "root_id": ids,
        "priority": rng.integers(0, 10, n),
    }
    return EventColumns.from_arrays({k: np.asarray(v)[order] for k, v in cols.items()})


@pytest.mark.parametrize(("kind", "within_ms"), [("overload", 2_800 + 1_500), ("slowdown", 1_000)])
def test_a_queue_under_load_still_fires(kind: str, within_ms: int) -> None:
    outs = feed(Governor(), fifo_queue(kind))
    ds = saturation([d for o in outs for d in o.directives])
    assert ds, f"{kind}: saturation never acted"
    assert all(d.issued_ms >= EPOCH_MS + 20_000 for d in ds), "nothing before the change"
    first = ds[0]
    assert first.action.type == "defer" and first.scope.endpoint == "svc"
    assert first.issued_ms - EPOCH_MS - 20_000 <= within_ms
    assert float(first.reason.evidence["load_ratio"]) >= SaturationConfig().load_hi


# --- the detector alone -----------------------------------------------------------------------


def features(lat_ms: np.ndarray, completions_per_s: np.ndarray) -> dict[str, np.ndarray]:
    """Window features of keys at a steady state: ``lat_ms`` on every window, throughput =
    completions (no errors), 1 s and 300 ms windows."""
    thr = completions_per_s
    return {
        "latency_mean_fast_ms": lat_ms,
        "latency_count_fast": 0.3 * thr,
        "completion_rate_fast_per_s": thr,
        "latency_mean_ms": lat_ms,
        "latency_count": thr,
        "latency_mean_mid_ms": np.full(lat_ms.shape, 100.0),
        "throughput_per_s": thr,
        "in_flight": thr * lat_ms / 1000.0,
        "attempts": thr,
        "mature": np.ones(lat_ms.shape),
    }


def warmed(k: int) -> Saturation:
    rng = np.random.default_rng(0)
    det = Saturation()
    for _ in range(200):
        lat = 100.0 * np.exp(rng.normal(0.0, 0.05, k))
        det.update_many(features(lat, 200.0 * np.exp(rng.normal(0.0, 0.05, k))))
    return det


def test_latency_up_counts_only_with_more_work_in_the_system() -> None:
    # key 0: a queue (completions at the normal rate, latency doubled): work x 2
    # key 1: a stop (latency doubled by the stragglers, completions at 30 %): work x 0.6
    # key 2: a service 3 x slower under the same arrivals (completions at 60 %): work x 1.8
    x = features(np.array([200.0, 200.0, 300.0]), np.array([200.0, 60.0, 120.0]))
    s = warmed(3).update_many(x)
    assert s.score[0] > 0.9 and s.score[2] > 0.9
    assert s.score[1] == 0.0
    np.testing.assert_allclose(s.evidence["load_ratio"], [2.0, 0.6, 1.8], rtol=0.05)
    np.testing.assert_allclose(s.evidence["completion_ratio"], [1.0, 0.3, 0.6], rtol=0.05)
    # without the gate the stop would have scored as high as the queue
    ungated = warmed(3)
    ungated.config = UNGATED
    assert ungated.update_many(x).score[1] > 0.9


def test_learned_values_do_not_depend_on_the_load_gate() -> None:
    """The baselines learn what they learned before: log latency (both windows) and log
    throughput, whatever the fast completion rate."""
    det = warmed(2)
    x = features(np.array([150.0, 150.0]), np.array([200.0, 200.0]))
    y = dict(x, completion_rate_fast_per_s=np.array([20.0, 2_000.0]))
    _, _, learn_x = det._score(x)
    _, _, learn_y = det._score(y)
    assert set(learn_x) == set(Saturation.baselines)
    for name in Saturation.baselines:
        np.testing.assert_array_equal(learn_x[name], learn_y[name])
    np.testing.assert_allclose(learn_x["log_latency"], np.log(150.0))
    np.testing.assert_allclose(learn_x["log_throughput"], np.log(200.0))


def test_load_gate_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="load_hi"):
        SaturationConfig(load_lo=1.3, load_hi=1.2)
