"""Synthetic request traffic for benchmarks and tests: a realistic mix, optionally with storms.

Seeded (``numpy.random.default_rng``); vectorised except for the id strings. A *storm* on an
endpoint is a synchronized retry storm: from ``start_ms`` for ``duration_ms`` every request on that
endpoint fails and is retried in phase (attempt 1, 2, … at the same instants, every
``period_ms``), so attempts per completed request climb.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from schemas.columns import STATUS_ERROR, STATUS_OK, STATUS_TIMEOUT, EventColumns
from schemas.frames import encode_columns

ENDPOINTS: tuple[str, ...] = (
    "POST /v1/chat",
    "POST /v1/embeddings",
    "POST /v1/responses",
    "GET /v1/models",
    *(f"tool:search-{i}" for i in range(6)),
    *(f"mcp:files-{i}" for i in range(6)),
    *(f"POST /internal/svc-{i}" for i in range(4)),
)
TENANTS: tuple[str, ...] = tuple(f"tenant-{c}" for c in "abcdefgh")


@dataclass(frozen=True, slots=True)
class Storm:
    endpoint: str
    start_ms: int
    duration_ms: int
    requests: int = 400  # distinct requests caught in the storm
    retries: int = 4  # attempts 1..retries after the failed first attempt
    period_ms: int = 200  # retry phase: every request retries at the same instants


def steady_traffic(
    n: int,
    start_ms: int,
    duration_ms: int,
    seed: int = 7,
    endpoints: Sequence[str] = ENDPOINTS,
    gateways: int = 4,
    id_prefix: str = "e",
) -> EventColumns:
    """``n`` attempts started over ``[start_ms, start_ms + duration_ms)``, in completion order
    (``ts_ms + latency_ms``): the order gateways emit them in, which the core's lateness follows."""
    rng = np.random.default_rng(seed)
    ts = np.sort(start_ms + rng.integers(0, max(duration_ms, 1), n)).astype(np.int64)
    ep_weights = 1.0 / np.arange(1, len(endpoints) + 1)
    ep = rng.choice(len(endpoints), n, p=ep_weights / ep_weights.sum())
    tn_weights = 1.0 / np.arange(1, len(TENANTS) + 1) ** 1.2
    tn = rng.choice(len(TENANTS), n, p=tn_weights / tn_weights.sum())
    status = rng.choice([STATUS_OK, STATUS_ERROR, STATUS_TIMEOUT], n, p=[0.97, 0.02, 0.01]).astype(
        np.int8
    )
    attempt = np.where(rng.random(n) < 0.04, rng.integers(1, 3, n), 0).astype(np.int16)
    depth = rng.choice([0, 1, 2], n, p=[0.6, 0.3, 0.1]).astype(np.int16)
    req = rng.integers(0, max(n // 2, 1), n)
    agent = rng.integers(0, 200, n)
    latency = np.minimum(rng.lognormal(5.3, 0.6, n), 60_000).astype(np.int64)
    return EventColumns.from_arrays(
        {
            "event_id": [f"{id_prefix}{seed}-{i}" for i in range(n)],
            "gateway_id": np.array([f"gw-{g}" for g in range(gateways)], dtype=object)[
                rng.integers(0, gateways, n)
            ],
            "ts_ms": ts,
            "latency_ms": latency,
            "tenant": np.array(TENANTS, dtype=object)[tn],
            "agent_id": np.array([f"agent-{a}" for a in range(200)], dtype=object)[agent],
            "endpoint": np.array(endpoints, dtype=object)[ep],
            "status": status,
            "attempt": attempt,
            "request_id": [f"r{seed}-{r}" for r in req],
            "root_id": [f"r{seed}-{r - r % 4}" for r in req],
            "depth": depth,
            "priority": rng.integers(0, 10, n).astype(np.int8),
            "tokens_in": rng.integers(50, 4_000, n),
            "tokens_out": rng.integers(0, 1_000, n),
        }
    ).take(_completion_order(ts, latency))


def storm_traffic(storm: Storm, seed: int = 11, id_prefix: str = "s") -> EventColumns:
    """The attempts of one synchronized retry storm (errors, retried in phase)."""
    rng = np.random.default_rng(seed)
    rows = []
    waves = max(1, storm.duration_ms // storm.period_ms)
    for w in range(waves):
        wave_start = storm.start_ms + w * storm.period_ms
        attempt = min(w, storm.retries)
        jitter = rng.integers(0, 20, storm.requests)
        for r in range(storm.requests):
            rows.append(
                (
                    wave_start + int(jitter[r]),
                    attempt,
                    f"storm{seed}-{w // (storm.retries + 1)}-{r}",
                )
            )
    n = len(rows)
    ts = np.array([r[0] for r in rows], dtype=np.int64)
    latency = rng.integers(5, 50, n)
    return EventColumns.from_arrays(
        {
            "event_id": [f"{id_prefix}{seed}-{i}" for i in range(n)],
            "gateway_id": np.full(n, "gw-storm", dtype=object),
            "ts_ms": ts,
            "latency_ms": latency,
            "tenant": np.full(n, TENANTS[0], dtype=object),
            "agent_id": [f"agent-{i % 50}" for i in range(n)],
            "endpoint": np.full(n, storm.endpoint, dtype=object),
            "status": np.full(n, STATUS_ERROR, dtype=np.int8),
            "attempt": np.array([r[1] for r in rows], dtype=np.int16),
            "request_id": [r[2] for r in rows],
            "root_id": [r[2] for r in rows],
            "priority": np.full(n, 3, dtype=np.int8),
        }
    ).take(_completion_order(ts, latency))


def _completion_order(ts_ms: np.ndarray, latency_ms: np.ndarray) -> np.ndarray:
    return np.argsort(ts_ms + latency_ms, kind="stable")


def merge_sorted(batches: Sequence[EventColumns]) -> EventColumns:
    """One stream in completion order, as a gateway fleet emits it."""
    cols = EventColumns.concat(list(batches))
    return cols.take(_completion_order(cols.ts_ms, cols.latency_ms))


def frames_by_endpoint(
    events: EventColumns, events_per_frame: int = 500, gateway_id: str = "gw-synth"
) -> Iterator[tuple[bytes, bytes]]:
    """``(key, frame)`` messages: events grouped by endpoint (the key), in time order, chunked."""
    keys, inverse = np.unique(events.endpoint.astype(str), return_inverse=True)
    for k, key in enumerate(keys):
        idx = np.flatnonzero(inverse == k)
        for start in range(0, len(idx), events_per_frame):
            chunk = events.take(idx[start : start + events_per_frame])
            yield str(key).encode(), encode_columns(gateway_id, str(key), chunk)


def frames_in_time_order(
    events: EventColumns, events_per_frame: int = 500, gateway_id: str = "gw-synth"
) -> list[tuple[bytes, bytes]]:
    """Like a gateway fleet would send: time slices, each split by endpoint into frames."""
    out: list[tuple[bytes, bytes]] = []
    for start in range(0, len(events), events_per_frame * 8):
        out.extend(
            frames_by_endpoint(
                events.take(np.arange(start, min(start + events_per_frame * 8, len(events)))),
                events_per_frame,
                gateway_id,
            )
        )
    return out
