"""Column layout of per-bucket aggregates and the fixed latency histogram.

Every bucket of every key holds integer sums (exactly mergeable by addition), integer maxima
(mergeable by ``max``) and HyperLogLog registers (mergeable by ``max``).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

# Key kinds: endpoint-level, endpoint x tenant, tenant-level (across endpoints).
KIND_ENDPOINT: Final = "E"
KIND_PAIR: Final = "P"
KIND_TENANT: Final = "T"

# Integer sum columns.
ATTEMPTS: Final = 0
FIRST_ATTEMPTS: Final = 1  # attempt == 0: intents entering (requests, not retries)
RETRIES: Final = 2  # attempt >= 1
SUCCESSES: Final = 3
ERRORS: Final = 4
TIMEOUTS: Final = 5
REJECTED: Final = 6  # refused by a gateway directive
ROOT_INTENTS: Final = 7  # attempt == 0 and depth == 0: one per root intent
SUB_REQUESTS: Final = 8  # attempt == 0 and depth >= 1
LATENCY_SUM_MS: Final = 9  # over attempts that ran (not rejected)
LATENCY_COUNT: Final = 10
DEPTH_SUM: Final = 11  # over first attempts
TOKENS: Final = 12  # tokens_in + tokens_out
ROOT_SUCCESSES: Final = 13  # depth == 0 and status ok, any attempt: root requests that returned
OK_LATENCY_SUM_MS: Final = 14  # over successful attempts: the service's answer time
TIMEOUT_LATENCY_SUM_MS: Final = 15  # over timed-out attempts: how long their clients waited
THROTTLED: Final = 16  # attempts a throttle directive paced or rejected (applied == throttle)
N_SCALAR: Final = 17

# Latency histogram of successful attempts (the service's answer times; errors and timeouts are
# counted apart, so neither fast failures nor clients' timeouts pin its quantiles): bin 0 is
# [0, 1) ms, bins 1..38 are log-spaced up to 120 s, bin 39 is >= 120 s.
LATENCY_EDGES_MS: Final = np.geomspace(1.0, 120_000.0, 39)
N_LATENCY_BINS: Final = LATENCY_EDGES_MS.shape[0] + 1
HIST0: Final = N_SCALAR

# Attempts by priority 0..9 (values outside are clipped).
N_PRIORITIES: Final = 10
PRIO0: Final = HIST0 + N_LATENCY_BINS
N_SUM: Final = PRIO0 + N_PRIORITIES

# Max columns.
DEPTH_MAX: Final = 0
N_MAX: Final = 1

# HyperLogLog registers for distinct agents.
HLL_M: Final = 64


def latency_bins(latency_ms: I64) -> I64:
    """Histogram bin of each latency (vectorized)."""
    return np.searchsorted(LATENCY_EDGES_MS, latency_ms.astype(np.float64), side="right").astype(
        np.int64
    )


def hist_quantile(hist: I64, q: float) -> F64:
    """Quantile ``q`` of each row of a latency histogram (rows, bins), log-interpolated in a bin.

    Rows with no observations give 0.
    """
    return hist_quantiles(hist, (q,))[0]


def hist_quantiles(hist: I64, qs: tuple[float, ...]) -> list[F64]:
    """``[hist_quantile(hist, q) for q in qs]``, sharing the cumulative counts."""
    counts = hist.astype(np.float64)
    total = counts.sum(axis=1)
    cum = np.cumsum(counts, axis=1)
    rows = np.arange(hist.shape[0])
    edges = LATENCY_EDGES_MS
    out = []
    for q in qs:
        target = q * total
        b = np.minimum((cum < target[:, None]).sum(axis=1), N_LATENCY_BINS - 1)
        before = np.where(b > 0, cum[rows, np.maximum(b - 1, 0)], 0.0)
        in_bin = counts[rows, b]
        frac = np.clip(
            np.divide(target - before, in_bin, out=np.ones_like(in_bin), where=in_bin > 0),
            0.0,
            1.0,
        )
        lo = np.where(b >= 1, edges[np.clip(b - 1, 0, edges.shape[0] - 1)], 0.0)
        hi = np.where(b < edges.shape[0], edges[np.clip(b, 0, edges.shape[0] - 1)], edges[-1])
        inner = np.where(b == 0, frac * hi, lo * (hi / np.maximum(lo, 1e-9)) ** frac)
        value = np.where(b >= edges.shape[0], edges[-1], inner)
        out.append(np.where(total > 0, value, 0.0))
    return out
