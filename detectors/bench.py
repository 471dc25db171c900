"""Micro-benchmark of the functional core: ``Governor.ingest`` + ``advance`` on dense traffic.

The only module of ``detectors`` that reads a clock (``time.perf_counter``); nothing in the core
imports it. The stream is synthetic and seeded (8 endpoints x 6 tenants, 500 agents, 100k roots,
completion-ordered, ~5000 events per second of event time), fed in 5000-event batches with an
``advance`` after each, as a streaming consumer would.
"""

from __future__ import annotations

import time
import zlib

import numpy as np

from detectors.aggregate import event_time_ms
from detectors.governor import Governor
from schemas.columns import EventColumns

EPOCH_MS = 1_700_000_000_000
BATCH = 5_000


def synthetic_events(n_events: int, seed: int = 0, events_per_s: int = 5_000) -> EventColumns:
    """Dense realistic traffic: ``n_events`` over ``n_events / events_per_s`` seconds."""
    rng = np.random.default_rng(seed)
    n = n_events
    span_ms = max(1, n * 1000 // events_per_s)
    ts = np.sort(rng.integers(EPOCH_MS, EPOCH_MS + span_ms, n))

    def names(prefix: str, k: int) -> np.ndarray:
        return np.array([f"{prefix}{i}" for i in range(k)], dtype=object)[rng.integers(0, k, n)]

    return EventColumns.from_arrays(
        {
            "ts_ms": ts,
            "latency_ms": rng.integers(5, 200, n),
            "status": rng.choice(4, n, p=[0.94, 0.03, 0.02, 0.01]),
            "attempt": (rng.random(n) < 0.1).astype(np.int16),
            "depth": rng.choice(3, n, p=[0.6, 0.3, 0.1]),
            "priority": rng.integers(0, 10, n),
            "tokens_in": rng.integers(0, 500, n),
            "tokens_out": rng.integers(0, 500, n),
            "endpoint": names("/e", 8),
            "tenant": names("t", 6),
            "agent_id": names("a", 500),
            "root_id": names("r", 100_000),
            "gateway_id": names("g", 3),
        }
    )


def run_core_bench(n_events: int = 400_000) -> dict[str, float]:
    """Events/s of ``ingest`` + ``advance`` over the whole stream, and its parts.

    - ``core_events_per_s``: events / (ingest + advance wall time);
    - ``ingest_events_per_s``: events / ingest time alone;
    - ``advance_ms_per_bucket``: advance time per closed 100 ms bucket (features, scores, policy;
      includes the once-per-second feature records);
    - ``buckets``, ``keys``, ``feature_records``: the work done, for context.
    """
    events = synthetic_events(n_events)
    gov = Governor()
    t_ingest = t_advance = 0.0
    n_features = 0
    first_bucket = int(event_time_ms(events, gov.config.event_time).min()) // gov.config.bucket_ms
    clock = time.perf_counter
    for lo in range(0, n_events, BATCH):
        batch = events.take(np.arange(lo, min(lo + BATCH, n_events)))
        t0 = clock()
        gov.ingest(batch)
        t1 = clock()
        out = gov.advance()
        t2 = clock()
        t_ingest += t1 - t0
        t_advance += t2 - t1
        n_features += len(out.features)
    last = gov._store.next_bucket
    buckets = 0 if last is None else last - first_bucket
    total = t_ingest + t_advance
    return {
        "core_events_per_s": n_events / total if total > 0 else float("inf"),
        "ingest_events_per_s": n_events / t_ingest if t_ingest > 0 else float("inf"),
        "advance_ms_per_bucket": 1000.0 * t_advance / max(buckets, 1),
        "buckets": float(buckets),
        "keys": float(len(gov._store)),
        "feature_records": float(n_features),
    }


def run_sources_bench(
    n_events: int = 1_000_000, partitions: int = 4, events_per_s: int = 16_000
) -> dict[str, float]:
    """One governor with a source per partition against one governor per partition, on the
    same events (split by endpoint, as the events topic is keyed), fed in the same chunks.

    A governor's cost is per event and per closed bucket; per-partition governors pay the
    per-bucket work once per partition. ``worker_vs_partition_governors`` is the speed ratio.
    """
    events = synthetic_events(n_events, events_per_s=events_per_s)
    part = np.array([zlib.crc32(str(e).encode()) % partitions for e in events.endpoint])
    parts = [events.take(np.flatnonzero(part == p)) for p in range(partitions)]
    chunk = BATCH // partitions
    steps = [
        (p, lo)
        for lo in range(0, max(len(x) for x in parts), chunk)
        for p in range(partitions)
        if lo < len(parts[p])
    ]
    clock = time.perf_counter

    def feed(govs: list[Governor], one: bool) -> tuple[float, int]:
        directives = 0
        t0 = clock()
        for p, lo in steps:
            x = parts[p]
            batch = x.take(np.arange(lo, min(lo + chunk, len(x))))
            gov = govs[0] if one else govs[p]
            gov.ingest(batch, source=p)  # a per-partition governor sees its one source
            directives += len(gov.advance().directives)
        return clock() - t0, directives

    per_partition_s, d_per = feed([Governor() for _ in range(partitions)], one=False)
    worker = Governor()
    for p in range(partitions):
        worker.expect(p)
    worker_s, d_worker = feed([worker], one=True)
    return {
        "events": float(n_events),
        "partitions": float(partitions),
        "partition_governors_events_per_s": n_events / per_partition_s,
        "worker_governor_events_per_s": n_events / worker_s,
        "worker_vs_partition_governors": per_partition_s / worker_s,
        "directives_partition_governors": float(d_per),
        "directives_worker_governor": float(d_worker),
    }


def run_bench() -> dict[str, dict[str, float]]:
    """``flyball bench core``: the core alone, then its use by a worker."""
    return {"core": run_core_bench(), "sources": run_sources_bench()}


if __name__ == "__main__":  # pragma: no cover
    for k, v in run_core_bench().items():
        print(f"{k:>24}: {v:,.2f}")
