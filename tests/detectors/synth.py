"""Labelled synthetic event streams (seeded numpy), and a helper that feeds a governor.

Baseline: root intents of several tenants (Poisson), spread over endpoints, with sub-requests
(depth 1), lognormal latencies slowed by a simple capacity model (latency x 1/(1 - load/capacity)
per endpoint and 100 ms), 1 % errors retried once with jittered backoff. From ``onset_ms`` one
pattern is added:

- ``storm``: ``chat`` fails fast; every failed attempt is retried on a shared 300 ms wave grid
  (fixed backoff, no jitter: in phase), retries fail too, up to 3 retries;
- ``saturation``: ``chat`` latency x (1 -> 4) over 2 s; from +2 s 30 % of its clients give up at
  their 1 s timeout (and every attempt slower than that times out);
- ``contention``: tenant ``t0`` adds ``surge`` x the total base rate of root intents on ``chat``;
- ``fanout``: tenant ``t1``'s intents spawn ~6 sub-requests, each with grandchildren (depth 2);
- ``organic``: every tenant's intents grow by the same total amount as ``contention`` adds,
  with normal retry and fan-out ratios.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.columns import STATUS_ERROR, STATUS_OK, STATUS_TIMEOUT, EventColumns

EPOCH_MS = 1_700_000_000_000
ENDPOINTS = ("chat", "search", "embed")
ENDPOINT_WEIGHTS = np.array([0.6, 0.25, 0.15])
CLIENT_TIMEOUT_MS = 1_000  # the saturation pattern's clients give up after this
MEDIAN_LATENCY_MS = {"chat": 80.0, "search": 40.0, "embed": 15.0}
PRIORITY_WEIGHTS = np.array([0.05, 0.1, 0.15, 0.15, 0.15, 0.1, 0.1, 0.1, 0.05, 0.05])


@dataclass(frozen=True)
class Scenario:
    pattern: str = "none"
    rate_per_s: float = 500.0  # root intents per second, all tenants
    tenants: tuple[str, ...] = ("t0", "t1", "t2", "t3")
    duration_ms: int = 24_000
    onset_ms: int = 18_000
    surge: float = 1.0  # extra root intents as a multiple of the base rate (contention/organic)
    base_fanout: float = 0.5
    capacity_load: float = 0.3  # baseline utilisation of each endpoint
    seed: int = 7


def _poisson_times(rng: np.random.Generator, rate: float, start: int, end: int) -> np.ndarray:
    n = rng.poisson(rate * (end - start) / 1000.0)
    return np.sort(rng.uniform(start, end, n)).astype(np.int64)


def generate(sc: Scenario) -> EventColumns:
    rng = np.random.default_rng(sc.seed)
    n_t = len(sc.tenants)
    ts_l, ten_l, ep_l = [], [], []
    for i, _ in enumerate(sc.tenants):
        t = _poisson_times(rng, sc.rate_per_s / n_t, 0, sc.duration_ms)
        ts_l.append(t)
        ten_l.append(np.full(t.shape, i))
        ep_l.append(rng.choice(3, t.shape[0], p=ENDPOINT_WEIGHTS))
    if sc.pattern == "contention":
        t = _poisson_times(rng, sc.surge * sc.rate_per_s, sc.onset_ms, sc.duration_ms)
        ts_l.append(t)
        ten_l.append(np.zeros(t.shape, dtype=np.int64))
        ep_l.append(np.zeros(t.shape, dtype=np.int64))
    if sc.pattern == "organic":
        for i in range(n_t):
            t = _poisson_times(rng, sc.surge * sc.rate_per_s / n_t, sc.onset_ms, sc.duration_ms)
            ts_l.append(t)
            ten_l.append(np.full(t.shape, i))
            ep_l.append(rng.choice(3, t.shape[0], p=ENDPOINT_WEIGHTS))
    ts = np.concatenate(ts_l)
    tenant = np.concatenate(ten_l)
    endpoint = np.concatenate(ep_l)
    n_root = ts.shape[0]
    root_id = np.arange(n_root)
    depth = np.zeros(n_root, dtype=np.int64)
    parent = np.full(n_root, -1)

    # sub-requests (depth 1, and depth 2 under a fan-out explosion)
    fan = np.full(n_root, sc.base_fanout)
    exploding = np.zeros(n_root, dtype=bool)
    if sc.pattern == "fanout":
        exploding = (tenant == 1) & (ts >= sc.onset_ms)
        fan[exploding] = 6.0
    k = rng.poisson(fan)
    p_idx = np.repeat(np.arange(n_root), k)
    sub_ts = ts[p_idx] + rng.integers(1, 30, p_idx.shape[0])
    sub = {
        "ts": sub_ts,
        "tenant": tenant[p_idx],
        "root": root_id[p_idx],
        "parent": p_idx,
        "depth": np.ones(p_idx.shape[0], dtype=np.int64),
        "endpoint": rng.choice([1, 2], p_idx.shape[0], p=[0.6, 0.4]),
    }
    k2 = rng.poisson(np.where(exploding[p_idx], 1.5, 0.0))
    g_idx = np.repeat(np.arange(p_idx.shape[0]), k2)
    grand = {
        "ts": sub_ts[g_idx] + rng.integers(1, 30, g_idx.shape[0]),
        "tenant": sub["tenant"][g_idx],
        "root": sub["root"][g_idx],
        "parent": n_root + g_idx,
        "depth": np.full(g_idx.shape[0], 2),
        "endpoint": np.full(g_idx.shape[0], 2),
    }
    ts = np.concatenate([ts, sub["ts"], grand["ts"]])
    tenant = np.concatenate([tenant, sub["tenant"], grand["tenant"]])
    endpoint = np.concatenate([endpoint, sub["endpoint"], grand["endpoint"]])
    root = np.concatenate([root_id, sub["root"], grand["root"]])
    parent = np.concatenate([parent, sub["parent"], grand["parent"]])
    depth = np.concatenate([depth, sub["depth"], grand["depth"]])
    n = ts.shape[0]
    request = np.arange(n)
    priority = rng.choice(10, n, p=PRIORITY_WEIGHTS)
    agent = rng.integers(0, 25, n)
    gateway = rng.integers(0, 3, n)

    # first attempts: outcome; failures are retried
    attempt = np.zeros(n, dtype=np.int64)
    storm = (sc.pattern == "storm") & (endpoint == 0) & (ts >= sc.onset_ms)
    fail = rng.random(n) < np.where(storm, 0.8, 0.01)
    rows = [dict(ts=ts, req=request, attempt=attempt, fail=fail)]
    cur_ts, cur_req, cur_fail, cur_storm = ts, request, fail, storm
    for a in range(1, 4):
        idx = np.flatnonzero(cur_fail)
        if not idx.size:
            break
        st = cur_storm[idx]
        jitter_next = cur_ts[idx] + 20 + rng.integers(200, 1000, idx.size)
        wave = (
            sc.onset_ms
            + (np.ceil((cur_ts[idx] + 120 - sc.onset_ms) / 300.0) * 300).astype(np.int64)
            + rng.integers(-5, 6, idx.size)
        )
        nts = np.where(st, wave, jitter_next)
        nfail = np.where(st, rng.random(idx.size) < 0.6, False)
        rows.append(dict(ts=nts, req=cur_req[idx], attempt=np.full(idx.size, a), fail=nfail))
        cur_ts, cur_req, cur_fail, cur_storm = nts, cur_req[idx], nfail, st
    a_ts = np.concatenate([r["ts"] for r in rows])
    a_req = np.concatenate([r["req"] for r in rows])
    a_att = np.concatenate([r["attempt"] for r in rows])
    a_fail = np.concatenate([r["fail"] for r in rows])
    keep = a_ts < sc.duration_ms
    a_ts, a_req, a_att, a_fail = a_ts[keep], a_req[keep], a_att[keep], a_fail[keep]
    a_ep = endpoint[a_req]

    # latency: lognormal x capacity model x saturation ramp
    med = np.array([MEDIAN_LATENCY_MS[e] for e in ENDPOINTS])[a_ep]
    lat = med * np.exp(rng.normal(0.0, 0.4, a_ts.shape[0]))
    bucket = a_ts // 100
    load = np.zeros((3, sc.duration_ms // 100 + 1))
    np.add.at(load, (a_ep, bucket), 1.0)
    base_per_bucket = np.array(
        [max(float(load[e, 10 : sc.onset_ms // 100].mean()), 0.1) for e in range(3)]
    )
    kernel = np.ones(10) / 10.0  # utilisation over the last second
    smooth = np.stack([np.convolve(load[e], kernel)[: load.shape[1]] for e in range(3)])
    rho = np.minimum(smooth / (base_per_bucket[:, None] / sc.capacity_load), 0.95)
    lat = lat / (1.0 - rho[a_ep, bucket])
    status = np.full(a_ts.shape[0], STATUS_OK)
    if sc.pattern == "saturation":
        on = (a_ep == 0) & (a_ts >= sc.onset_ms)
        m = 1.0 + 3.0 * np.clip((a_ts - sc.onset_ms) / 2000.0, 0.0, 1.0)
        lat = np.where(on, lat * m, lat)
        late = on & (a_ts >= sc.onset_ms + 2000) & (rng.random(a_ts.shape[0]) < 0.3)
        late |= on & (lat >= CLIENT_TIMEOUT_MS)
        status[late] = STATUS_TIMEOUT  # the client gave up after its timeout
        lat = np.where(late, CLIENT_TIMEOUT_MS, lat)
    lat = np.where(a_fail, 10 + rng.integers(0, 20, a_ts.shape[0]), lat).astype(np.int64)
    status[a_fail] = STATUS_ERROR
    tname = np.array(sc.tenants, dtype=object)
    ep_name = np.array(ENDPOINTS, dtype=object)
    order = np.argsort(a_ts + lat, kind="stable")  # emitted at completion
    cols: dict[str, Any] = {
        "ts_ms": EPOCH_MS + a_ts,
        "latency_ms": lat,
        "status": status,
        "attempt": a_att,
        "tenant": tname[tenant[a_req]],
        "endpoint": ep_name[a_ep],
        "agent_id": np.array([f"ag{i}" for i in range(25)], dtype=object)[agent[a_req]],
        "gateway_id": np.array(["gw0", "gw1", "gw2"], dtype=object)[gateway[a_req]],
        "request_id": np.array([f"r{i}" for i in range(n)], dtype=object)[a_req],
        "root_id": np.array([f"r{i}" for i in range(n)], dtype=object)[root[a_req]],
        "depth": depth[a_req],
        "priority": priority[a_req],
        "tokens_in": np.full(a_ts.shape[0], 100),
        "tokens_out": np.full(a_ts.shape[0], 50),
    }
    cols = {k2_: np.asarray(v)[order] for k2_, v in cols.items()}
    # tenant-prefixed agents
    cols["agent_id"] = np.char.add(cols["tenant"].astype(str), cols["agent_id"].astype(str)).astype(
        object
    )
    return EventColumns.from_arrays(cols)


def feed(gov: Any, events: EventColumns, step_ms: int = 100) -> list[Any]:
    """Ingest in arrival (completion-time) slices of ``step_ms``, advancing after each."""
    done = events.ts_ms + events.latency_ms
    outs = []
    edges = np.arange(int(done.min()) // step_ms * step_ms, int(done.max()) + step_ms, step_ms)
    cuts = np.searchsorted(done, edges)
    cuts[-1] = len(done)
    for lo, hi in itertools.pairwise(cuts):
        gov.ingest(events.take(np.arange(lo, hi)))
        outs.append(gov.advance())
    return outs
