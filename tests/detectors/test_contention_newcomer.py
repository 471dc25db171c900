"""Contention on a tenant that is new to an endpoint.

A tenant that was not on an endpoint has baseline share 0 there: appearing and taking most of a
contended endpoint is growth, and the endpoint's own (mature) baselines say whether it is
contended. Checked end to end (events -> governor -> directives) on a small seeded generator:
``base`` tenants on ``chat`` and ``search`` from the start, newcomer tenants on ``chat`` from
``onset_ms``, latency slowed by a capacity model (x 1 / (1 - utilisation over the last second):
a queue).
And on the detector alone: readiness follows the endpoint, and a newcomer does not learn its
flood as its normal share while directives reject part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pytest
from synth import EPOCH_MS, feed

from detectors.governor import Governor, GovernorOutput
from detectors.scores.contention import Contention, ContentionConfig
from schemas.columns import STATUS_OK, EventColumns
from schemas.directive import Directive

MEDIAN_MS = {"chat": 80.0, "search": 40.0}
CHAT_WEIGHT = 0.7  # share of the base tenants' intents that go to chat


@dataclass(frozen=True)
class Newcomers:
    rate_per_s: float = 500.0  # base root intents per second, all base tenants
    base: tuple[str, ...] = ("t0", "t1", "t2", "t3")
    new: tuple[str, ...] = ("nova",)
    new_rate_x: float = 2.0  # each newcomer's chat rate as a multiple of the base chat rate
    capacity_load: float = 0.3  # base utilisation of each endpoint (small: never contended)
    duration_ms: int = 15_000
    onset_ms: int = 11_000
    seed: int = 11


def generate(sc: Newcomers) -> EventColumns:
    rng = np.random.default_rng(sc.seed)
    ts_l: list[np.ndarray] = []
    ten_l: list[np.ndarray] = []
    ep_l: list[np.ndarray] = []

    def arrivals(tenant: str, rate: float, start: int, chat_p: float) -> None:
        n = rng.poisson(rate * (sc.duration_ms - start) / 1000.0)
        ts_l.append(np.sort(rng.uniform(start, sc.duration_ms, n)).astype(np.int64))
        ten_l.append(np.full(n, tenant, dtype=object))
        ep_l.append(np.where(rng.random(n) < chat_p, "chat", "search").astype(object))

    for t in sc.base:
        arrivals(t, sc.rate_per_s / len(sc.base), 0, CHAT_WEIGHT)
    chat_rate = sc.rate_per_s * CHAT_WEIGHT
    for t in sc.new:
        arrivals(t, sc.new_rate_x * chat_rate, sc.onset_ms, 1.0)
    ts, tenant, endpoint = np.concatenate(ts_l), np.concatenate(ten_l), np.concatenate(ep_l)
    n = ts.shape[0]
    # latency: lognormal x capacity model (utilisation over the last second, per endpoint)
    bucket = ts // 100
    n_b = sc.duration_ms // 100 + 1
    on_chat = endpoint == "chat"
    lat = np.where(on_chat, MEDIAN_MS["chat"], MEDIAN_MS["search"]) * np.exp(
        rng.normal(0.0, 0.3, n)
    )
    for mask in (on_chat, ~on_chat):
        load = np.bincount(bucket[mask], minlength=n_b).astype(np.float64)
        base = max(float(load[10 : sc.onset_ms // 100].mean()), 0.1)
        smooth = np.convolve(load, np.ones(10) / 10.0)[:n_b]
        rho = np.minimum(smooth / (base / sc.capacity_load), 0.95)
        lat[mask] = lat[mask] / (1.0 - rho[bucket[mask]])
    latency = lat.astype(np.int64)
    ids = np.array([f"r{i}" for i in range(n)], dtype=object)
    cols: dict[str, Any] = {
        "ts_ms": EPOCH_MS + ts,
        "latency_ms": latency,
        "status": np.full(n, STATUS_OK),
        "tenant": tenant,
        "endpoint": endpoint,
        "agent_id": np.char.add(tenant.astype(str), rng.integers(0, 20, n).astype(str)).astype(
            object
        ),
        "gateway_id": np.array(["gw0", "gw1"], dtype=object)[rng.integers(0, 2, n)],
        "request_id": ids,
        "root_id": ids,
        "priority": rng.integers(2, 10, n),
        "tokens_in": np.full(n, 100),
        "tokens_out": np.full(n, 50),
    }
    order = np.argsort(ts + latency, kind="stable")  # emitted at completion
    return EventColumns.from_arrays({k: np.asarray(v)[order] for k, v in cols.items()})


@cache
def run(sc: Newcomers) -> list[GovernorOutput]:
    return feed(Governor(), generate(sc))


def contention(outs: list[GovernorOutput]) -> list[Directive]:
    return [
        d
        for o in outs
        for d in o.directives
        if d.reason.detector == "contention" and d.action.type != "release"
    ]


@pytest.mark.parametrize("rate", [50.0, 500.0, 5000.0])
def test_newcomer_flooding_a_contended_endpoint_is_throttled_within_1s(rate: float) -> None:
    sc = Newcomers(rate_per_s=rate)
    ds = contention(run(sc))
    assert ds, "the newcomer's flood was never acted on"
    first = ds[0]
    # the flood (and so the contention it causes) starts at onset_ms
    assert 0 <= first.issued_ms - EPOCH_MS - sc.onset_ms <= 1000
    assert first.action.type == "throttle"
    assert first.scope.to_json() == {"endpoint": "chat", "tenant": "nova"}
    assert first.action.rate_per_s > 0
    assert {d.scope.tenant for d in ds} == {"nova"}  # never the incumbents
    ev = first.reason.evidence
    assert float(ev["share_baseline"]) < 0.2 and float(ev["endpoint_wait_ratio"]) > 0.5


def chat_features(outs: list[GovernorOutput], tenant: str, name: str, t_ms: int) -> float:
    """Feature ``name`` of chat x ``tenant`` ("": the endpoint) over the 1 s horizon at t_ms."""
    (v,) = [
        f.values[name]
        for o in outs
        for f in o.features
        if f.endpoint == "chat"
        and f.tenant == tenant
        and f.horizon_ms == 1000
        and f.ts_ms == EPOCH_MS + t_ms
    ]
    return v


def test_newcomer_on_an_uncontended_endpoint_is_left_alone() -> None:
    # the same flood, but the endpoint has ample capacity: latency stays normal, no errors
    sc = Newcomers(capacity_load=0.02)
    outs = run(sc)
    before, after = sc.onset_ms - 1000, sc.onset_ms + 2000
    assert chat_features(outs, "nova", "tenant_share", after) > 0.6  # it does monopolise chat
    lat = chat_features(outs, "", "latency_mean_ms", after)
    assert lat < 1.1 * chat_features(outs, "", "latency_mean_ms", before)
    assert chat_features(outs, "", "error_fraction", after) == 0.0
    assert contention(outs) == []
    assert not [s for o in outs for s in o.scores if s.detector == "contention" and s.score > 0]


def test_even_surge_of_new_tenants_is_not_contention() -> None:
    # four newcomers, each as big as an incumbent: the endpoint is contended (its load
    # doubles), but nobody takes more than a fair share
    sc = Newcomers(new=("n0", "n1", "n2", "n3"), new_rate_x=0.25)
    outs = run(sc)
    after = sc.onset_ms + 2000
    lat = chat_features(outs, "", "latency_mean_ms", after)
    assert lat > 1.5 * chat_features(outs, "", "latency_mean_ms", sc.onset_ms - 1000)
    assert all(chat_features(outs, t, "tenant_share", after) < 0.2 for t in sc.new)
    guarded = {"retry_storm", "contention", "fanout"}
    assert [d for o in outs for d in o.directives if d.reason.detector in guarded] == []


# --- the detector alone: rows 0 (endpoint) and 1 (the newcomer's pair) ---


FLOOR_MS = 80.0  # the endpoint's no-load latency


def features(
    pair_attempts: float, share: float, wait_ms: float, rejected: float = 0.0
) -> dict[str, np.ndarray]:
    """The endpoint's queue as the capacity tracker reports it (on the endpoint row)."""
    queued = 1.0 if wait_ms >= 0.5 * FLOOR_MS else 0.0
    return {
        "attempts": np.array([100.0, pair_attempts]),
        "mature": np.ones(2),
        "tenant_share": np.array([0.0, share]),
        "active_tenants": np.full(2, 4.0),
        "queued": np.array([queued, 0.0]),
        "observed_wait_ms": np.array([wait_ms, 0.0]),
        "latency_floor_ms": np.array([FLOOR_MS, 0.0]),
        "endpoint_attempts": np.full(2, 100.0),
        "endpoint_row": np.zeros(2),
        "rejected": np.array([rejected, rejected]),
    }


def mature_endpoint(det: Contention) -> None:
    for _ in range(det.config.warmup):
        det.update_many(features(0.0, 0.0, 0.0))  # the tenant is not on the endpoint yet


def test_newcomer_is_ready_when_its_endpoint_is() -> None:
    det = Contention()
    mature_endpoint(det)
    assert det.learned.tolist() == [det.config.warmup, 0]
    calm = det.update_many(features(80.0, 0.8, 0.0))
    assert calm.score[1] == 0.0  # no queue at the endpoint: nothing to score
    flood = det.update_many(features(80.0, 0.8, 120.0))
    assert flood.score[1] > 0.9
    assert flood.evidence["endpoint_wait_ratio"][1] == pytest.approx(1.5)
    # without the endpoint link the pair is on its own (and not ready)
    alone = Contention()
    mature_endpoint(alone)
    x = features(80.0, 0.8, 120.0)
    del x["endpoint_row"]
    assert alone.update_many(x).score[1] == 0.0


def test_throttled_newcomer_does_not_learn_its_flood_as_normal() -> None:
    det = Contention(ContentionConfig())
    mature_endpoint(det)
    for _ in range(2 * det.config.warmup):  # calm because throttled: rejected attempts
        det.update_many(features(80.0, 0.8, 0.0, rejected=20.0))
    assert det.learned[1] == 0
    assert det.update_many(features(80.0, 0.8, 120.0, rejected=20.0)).score[1] > 0.9
    for _ in range(det.config.warmup):  # calm on its own: its share becomes its normal
        det.update_many(features(80.0, 0.8, 0.0))
    assert det.learned[1] == det.config.warmup
    assert det.update_many(features(80.0, 0.8, 120.0)).score[1] == 0.0
