"""``flyball bench keys``: memory per tracked key, and the bound a cardinality flood meets.

Measured with ``tracemalloc`` (numpy reports its buffers to it), in one run: the governor's memory
after 2 s of event time with ``k`` distinct endpoints (one tenant each, so each endpoint brings a
pair and a tenant key too), for two ``k`` (the slope is the cost of 1,000 endpoints), then the
same flood of 20,000 random names against the default ``KeyLimits``.
"""

from __future__ import annotations

import gc
import tracemalloc
from dataclasses import asdict
from typing import Any

import numpy as np

from detectors.config import GovernorConfig
from detectors.governor import Governor
from detectors.keybudget import KeyLimits
from schemas.columns import EventColumns

T0 = 1_763_900_000_000


def _flood(names: int, rows: int, seed: int = 0) -> EventColumns:
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, names, rows)
    return EventColumns.from_arrays({
        "ts_ms": T0 + np.arange(rows) * 2_000 // rows,
        "latency_ms": np.full(rows, 20),
        "endpoint": np.array([f"GET /{i:x}" for i in pick.tolist()], dtype=object),
        "tenant": np.array([f"t{i}" for i in pick.tolist()], dtype=object),
    })


def _memory_mb(limits: KeyLimits, events: EventColumns) -> tuple[float, int]:
    gc.collect()
    tracemalloc.start()
    try:
        gov = Governor(GovernorConfig(keys=limits))
        gov.ingest(events)
        gov.advance(T0 + 2_500)
        used, _ = tracemalloc.get_traced_memory()
        n_keys = len(gov._store)
    finally:
        tracemalloc.stop()
    return used / 2**20, n_keys


def run_keys_bench(names: tuple[int, int] = (250, 1_000), flood: int = 20_000) -> dict[str, Any]:
    huge = KeyLimits(max_endpoints=10**6, max_tenants=10**6, max_pairs=10**6)
    (lo_mb, lo_keys), (hi_mb, hi_keys) = (
        _memory_mb(huge, _flood(n, 4 * n)) for n in names
    )
    per_key_mb = (hi_mb - lo_mb) / max(hi_keys - lo_keys, 1)
    limits = KeyLimits()
    bounded_mb, bounded_keys = _memory_mb(limits, _flood(flood, 2 * flood, seed=1))
    bound_keys = limits.max_endpoints + limits.max_tenants + limits.max_pairs + 3
    return {
        "mb_per_1000_endpoints": round((hi_mb - lo_mb) / (names[1] - names[0]) * 1_000, 1),
        "mb_per_1000_keys": round(per_key_mb * 1_000, 1),
        "limits": asdict(limits),
        "bound_keys": bound_keys,
        "bound_mb": round(per_key_mb * bound_keys, 1),
        "flood_names": flood,
        "flood_keys_tracked": bounded_keys,
        "flood_mb": round(bounded_mb, 1),
        "unbounded_flood_mb_estimate": round(per_key_mb * 3 * flood, 1),
    }
