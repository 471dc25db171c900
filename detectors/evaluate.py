"""One evaluation at a closed bucket boundary: window sums -> feature arrays for the detectors,
and the feature records emitted at a coarser cadence."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from detectors import hll
from detectors.features import (
    Features,
    core,
    latency_quantiles,
    ratio,
    retry_coherence,
    tenant_context,
)
from detectors.keybudget import OTHER
from detectors.layout import (
    ATTEMPTS,
    DEPTH_MAX,
    FIRST_ATTEMPTS,
    I64,
    KIND_ENDPOINT,
    KIND_PAIR,
    KIND_TENANT,
    RETRIES,
)
from detectors.windows import Key, WindowStore
from schemas.records import FeatureRecord

LEVELS = {KIND_ENDPOINT: 0.0, KIND_PAIR: 1.0, KIND_TENANT: 2.0}


@dataclass(frozen=True, slots=True)
class KeyIndex:
    """Structure of the key set: kinds and cross-links, rebuilt when the key set changes."""

    version: int
    kind: np.ndarray
    endpoint_row: I64  # pair -> its endpoint row; other rows -> own row
    pairs_of_tenant: dict[str, list[int]]
    is_kind: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> row mask
    folded: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # ``~other`` keys

    def mask(self, kind: str) -> np.ndarray:
        """``self.kind == kind`` (cached per key set)."""
        cache = getattr(self, "is_kind", None)  # absent in snapshots of older versions
        m: np.ndarray | None = None if cache is None else cache.get(kind)
        if m is None:
            m = self.kind == kind
            if cache is not None:
                cache[kind] = m
        return m

    @staticmethod
    def build(keys: list[Key], version: int) -> KeyIndex:
        index = {k: i for i, k in enumerate(keys)}
        kind = np.array([k[0] for k in keys], dtype=object)
        endpoint_row = np.arange(len(keys), dtype=np.int64)
        pairs: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            if k[0] == KIND_PAIR:
                endpoint_row[i] = index[(KIND_ENDPOINT, k[1], "")]
                pairs.setdefault(k[2], []).append(i)
        folded = np.array([OTHER in (k[1], k[2]) for k in keys], dtype=bool)
        return KeyIndex(version, kind, endpoint_row, pairs, {}, folded)


def fast_sums(store: WindowStore, fast_buckets: int) -> I64:
    """Sums of every key over its last ``fast_buckets`` closed buckets."""
    out: I64 = store.ring_sum[:, store.recent(fast_buckets)].sum(axis=1)
    return out


def detector_inputs(
    store: WindowStore,
    idx: KeyIndex,
    horizons_buckets: tuple[int, ...],
    bucket_ms: int,
) -> Features:
    """Features of the shortest horizon for every key, plus the context the detectors need
    (the capacity tracker adds the service's physical quantities: ``detectors.capacity``)."""
    hb0 = horizons_buckets[0]
    short = store.horizon_sum[0]
    f = core(short, hb0 * bucket_ms)
    f["retry_coherence"] = retry_coherence(store.ring_sum[:, store.recent(hb0), RETRIES])
    if len(horizons_buckets) > 1:
        # the retries of a window answer intents that arrived over the retry horizon (the mid
        # window): their first attempts at its rate, so that attempts per first attempt stays
        # finite, and meaningful, when arrivals stop and the last retries drain
        first = short[:, FIRST_ATTEMPTS].astype(np.float64)
        mid = store.horizon_sum[1][:, FIRST_ATTEMPTS] * (hb0 / horizons_buckets[1])
        f["amplification"] = ratio(short[:, ATTEMPTS].astype(np.float64),
                                   np.maximum(first, mid), empty=1.0)  # fmt: skip
    long = store.horizon_sum[-1][:, ATTEMPTS].astype(np.float64)
    share, active, shift = tenant_context(
        f["attempts"], long, idx.endpoint_row, idx.mask(KIND_PAIR)
    )
    f["tenant_share"], f["active_tenants"], f["tenant_mix_shift"] = share, active, shift
    f["endpoint_attempts"] = f["attempts"][idx.endpoint_row]
    f["endpoint_row"] = idx.endpoint_row.astype(np.float64)  # pair -> its endpoint's row
    assert store.next_bucket is not None
    f["mature"] = (store.next_bucket - store.first_bucket >= hb0).astype(np.float64)
    return f


def feature_records(
    store: WindowStore,
    idx: KeyIndex,
    horizons_buckets: tuple[int, ...],
    bucket_ms: int,
    now_ms: int,
) -> list[FeatureRecord]:
    """Full features of every key with traffic, for every horizon."""
    out: list[FeatureRecord] = []
    long = store.horizon_sum[-1][:, ATTEMPTS].astype(np.float64)
    level = np.array([LEVELS[k[0]] for k in store.keys], dtype=np.float64)
    keys = store.keys
    for h, hb in enumerate(horizons_buckets):
        sums = store.horizon_sum[h]
        rows = np.flatnonzero(sums[:, ATTEMPTS] > 0)
        if not rows.size:
            continue
        f = core(sums, hb * bucket_ms)
        share, active, shift = tenant_context(
            f["attempts"], long, idx.endpoint_row, idx.mask(KIND_PAIR)
        )
        f.update(tenant_share=share, active_tenants=active, tenant_mix_shift=shift)
        f = {name: v[rows] for name, v in f.items()}
        f.update(latency_quantiles(sums[rows]))
        f["distinct_agents"] = hll.estimate(store.window_hll_rows(hb, rows))
        f["depth_max"] = store.window_max_rows(hb, rows)[:, DEPTH_MAX].astype(np.float64)
        f["retry_coherence"] = retry_coherence(store.window_column(hb, rows, RETRIES))
        names = [*sorted(f), "level"]
        table = np.stack([*(f[n] for n in names[:-1]), level[rows]], axis=1).tolist()
        horizon_ms = hb * bucket_ms
        for r, values in zip(rows.tolist(), table, strict=True):
            key = keys[r]
            out.append(
                FeatureRecord(
                    now_ms, horizon_ms, key[1], key[2], dict(zip(names, values, strict=True))
                )
            )
    return out
