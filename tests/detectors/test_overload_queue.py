"""Traffic that stops is not overload; a queue under load is, and the admission law acts on it.

Events are stamped at completion: after a stop the last completions are the long-latency
stragglers, so latency rises while throughput falls. The overload rule reads the queue from the
shift of the *low* latency quantile (every request in a FIFO queue waits the queue's wait, the
quick ones included; stragglers only fatten the tail) and from the wait's growth, so a stop is
no queue, while a queue under load is measured, with the service's capacity, from the
completions themselves.
"""

from __future__ import annotations

import heapq

import numpy as np
import pytest
from synth import EPOCH_MS, feed

from detectors.governor import Governor
from detectors.scores.overload import OverloadConfig
from schemas.columns import STATUS_OK, STATUS_TIMEOUT, EventColumns
from schemas.directive import Directive
from streams.synthetic import steady_traffic


def run_until_quiet(gov: Governor, events: EventColumns, chunk: int = 10_000) -> list[Directive]:
    """Ingest in completion-order chunks, then advance past the last completion."""
    out: list[Directive] = []
    for lo in range(0, len(events), chunk):
        gov.ingest(events.take(np.arange(lo, min(lo + chunk, len(events)))))
        out += gov.advance().directives
    out += gov.advance(int((events.ts_ms + events.latency_ms).max()) + 5_000).directives
    return out


def overload(ds: list[Directive]) -> list[Directive]:
    return [d for d in ds if d.reason.detector == "overload"]


# --- traffic that stops ---------------------------------------------------------------------

# 10,000 attempts/s over 20 endpoints (the quietest still ~150/s), lognormal latencies with a
# tail (median 200 ms): the stragglers keep completing for seconds after the last start.
N, DURATION_MS = 200_000, 20_000


@pytest.mark.parametrize("seed", [1, 2])
def test_traffic_that_stops_gets_no_overload_directive(seed: int) -> None:
    events = steady_traffic(N, EPOCH_MS, DURATION_MS, seed=seed)
    ds = overload(run_until_quiet(Governor(), events))
    assert [(d.issued_ms - EPOCH_MS, d.scope.endpoint) for d in ds] == []


# --- a queue under load ---------------------------------------------------------------------


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


CAPACITY_PER_S = 32 / (0.1 * np.exp(0.3**2 / 2))


SLOWDOWN_READ_AS_WAIT = pytest.mark.xfail(
    strict=True,
    reason="issue 9: a 5x slower service shifts the low quantile the wait is read from, so the "
    "time in service (answer minus wait) is under-read and the cap sized ~7 of 32 servers; "
    "only a cap that binds with no queue is probed upwards",
)


@pytest.mark.parametrize(
    ("kind", "within_ms"),
    [("overload", 2_800 + 4_000), pytest.param("slowdown", 2_000, marks=SLOWDOWN_READ_AS_WAIT)],
)
def test_a_queue_under_load_is_admitted_at_about_its_capacity(kind: str, within_ms: int) -> None:
    outs = feed(Governor(), fifo_queue(kind))
    ds = overload([d for o in outs for d in o.directives])
    assert ds, f"{kind}: overload never acted"
    assert all(d.issued_ms >= EPOCH_MS + 20_000 for d in ds), "nothing before the change"
    first = ds[0]
    assert first.action.type == "limit" and first.scope.endpoint == "svc"
    assert first.issued_ms - EPOCH_MS - 20_000 <= within_ms
    ev = first.reason.evidence
    assert "max_inflight = capacity" in str(ev["law"])
    # the capacity measured from the completions while queued: the servers' (5 x less when
    # every service is 5 x slower), within the noise of a few seconds of completions
    true_capacity = CAPACITY_PER_S / (5.0 if kind == "slowdown" else 1.0)
    assert float(ev["capacity_per_s"]) == pytest.approx(true_capacity, rel=0.25)
    # the cap is the servers (capacity x time in service, Little's law) plus the headroom: the
    # same 32 servers whether every service is 5 x slower or not (a cap clocks itself)
    headroom = 1.0 + OverloadConfig().limit_headroom
    assert int(ev["sized_inflight"]) == pytest.approx(32 * headroom, rel=0.3)
