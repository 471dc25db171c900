"""Window features per key, from the running sums of one horizon (vectorized over keys).

Feature names (``FeatureRecord.values``); counts are over the horizon, rates per second:

- ``attempts``, ``first_attempts`` (attempt == 0: intents entering), ``retries``, ``successes``,
  ``errors``, ``timeouts``, ``rejected`` (refused by a directive), ``root_intents`` (depth 0 first
  attempts: one per root intent), ``sub_requests`` (depth >= 1 first attempts),
  ``root_successes`` (depth 0 attempts that returned ok, whichever attempt it was),
  ``throttled`` (attempts a throttle directive paced or rejected at a gateway)
- ``attempt_rate_per_s``, ``intent_rate_per_s`` (first attempts/s), ``throughput_per_s`` (ok/s)
- ``error_fraction`` ((errors + timeouts) / attempts that ran), ``retry_fraction``,
  ``timeout_fraction`` (timeouts / attempts that ran: work whose client gave up, i.e. work for
  nobody when the service still serves it)
- ``ok_latency_mean_ms`` (successful attempts only: the service's answer time),
  ``timeout_latency_mean_ms`` (timed-out attempts: how long their clients waited, i.e. their
  timeout)
- ``latency_mean_ms`` (attempts that ran), ``latency_p50_ms``, ``latency_p95_ms``,
  ``latency_p99_ms`` (successful attempts, from a fixed
  log-spaced histogram, mergeable; ~±15 % resolution)
- ``in_flight``: Little's law, completion rate x mean latency = latency-ms summed / horizon-ms
- ``amplification``: attempts per first attempt (1 = no retries)
- ``fanout``: distinct requests per root intent, ``(roots + sub_requests) / roots``, and
  ``depth_mean``: mean depth of those requests, ``depth_sum / (roots + sub_requests)``; retries
  never count (requests are counted at their first attempt). ``roots`` is ``max(root_intents,
  root_successes)``: sub-requests follow either their root's first attempt or the root attempt
  that returned (an agent acts on the answer). When a retry storm drains, old intents' roots
  return on a retry and spawn their sub-requests now, long after their first attempts were
  counted; counting those roots again as they return (once each: a request returns ok once)
  keeps the ratio per intent, where first attempts alone would read the drain as fan-out. In
  steady traffic ``root_successes <= root_intents`` and nothing changes.
- ``depth_max``, ``tokens_per_intent`` (tokens per root intent)
- ``distinct_agents``: HyperLogLog estimate (64 registers, ~13 % error), mergeable by ``max``
- ``retry_coherence`` in [0, 1]: how concentrated retries are in time over the horizon's buckets:
  one minus the normalised effective number of occupied buckets (participation ratio of the
  per-bucket retry counts, unbiased for Poisson counts). ~0 for independent (jittered) retries at
  any rate, ~0.75 for three in-phase waves per second, 1 when all retries land in one bucket.
  Unlike a Kuramoto order parameter it needs no assumed retry period (agents' backoffs differ),
  and its Poisson baseline of 0 makes it comparable across rates.
- ``tenant_share`` (endpoint x tenant keys: the tenant's share of the endpoint's attempts),
  ``active_tenants`` (endpoint keys), ``tenant_mix_shift`` (endpoint keys: total-variation
  distance between the tenant mix of the shortest and the longest horizon).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from detectors.layout import (
    ATTEMPTS,
    DEPTH_SUM,
    ERRORS,
    F64,
    FIRST_ATTEMPTS,
    HIST0,
    I64,
    LATENCY_COUNT,
    LATENCY_SUM_MS,
    N_LATENCY_BINS,
    OK_LATENCY_SUM_MS,
    REJECTED,
    RETRIES,
    ROOT_INTENTS,
    ROOT_SUCCESSES,
    SUB_REQUESTS,
    SUCCESSES,
    THROTTLED,
    TIMEOUT_LATENCY_SUM_MS,
    TIMEOUTS,
    TOKENS,
    hist_quantiles,
)

Features = dict[str, F64]

COUNT_FEATURES: Final = {
    "attempts": ATTEMPTS,
    "first_attempts": FIRST_ATTEMPTS,
    "retries": RETRIES,
    "successes": SUCCESSES,
    "errors": ERRORS,
    "timeouts": TIMEOUTS,
    "rejected": REJECTED,
    "root_intents": ROOT_INTENTS,
    "sub_requests": SUB_REQUESTS,
    "root_successes": ROOT_SUCCESSES,
    "throttled": THROTTLED,
}


def ratio(num: F64, den: F64, empty: float = 0.0) -> F64:
    """``num / den`` where ``den > 0``, else ``empty`` (guarded divisor)."""
    out = np.empty(num.shape, dtype=np.float64)
    out.fill(empty)
    return np.divide(num, den, out=out, where=den > 0)


def core(sums: I64, horizon_ms: int) -> Features:
    """The features computed at every evaluation (cheap: O(keys))."""
    s = sums.astype(np.float64)
    per_s = 1000.0 / horizon_ms
    out: Features = {name: s[:, col] for name, col in COUNT_FEATURES.items()}
    first = s[:, FIRST_ATTEMPTS]
    ran = s[:, LATENCY_COUNT]
    out["attempt_rate_per_s"] = s[:, ATTEMPTS] * per_s
    out["intent_rate_per_s"] = first * per_s
    out["throughput_per_s"] = s[:, SUCCESSES] * per_s
    out["completion_rate_per_s"] = ran * per_s
    out["error_fraction"] = ratio(s[:, ERRORS] + s[:, TIMEOUTS], ran)
    out["retry_fraction"] = ratio(s[:, RETRIES], s[:, ATTEMPTS])
    out["latency_mean_ms"] = ratio(s[:, LATENCY_SUM_MS], ran)
    out["ok_latency_mean_ms"] = ratio(s[:, OK_LATENCY_SUM_MS], s[:, SUCCESSES])
    out["timeout_latency_mean_ms"] = ratio(s[:, TIMEOUT_LATENCY_SUM_MS], s[:, TIMEOUTS])
    out["timeout_fraction"] = ratio(s[:, TIMEOUTS], ran)
    out["in_flight"] = s[:, LATENCY_SUM_MS] / horizon_ms
    out["amplification"] = ratio(s[:, ATTEMPTS], first, empty=1.0)
    roots = np.maximum(s[:, ROOT_INTENTS], s[:, ROOT_SUCCESSES])
    requests = roots + s[:, SUB_REQUESTS]
    out["fanout"] = ratio(requests, roots, empty=1.0)
    out["depth_mean"] = ratio(s[:, DEPTH_SUM], requests)
    out["tokens_per_intent"] = ratio(s[:, TOKENS], s[:, ROOT_INTENTS])
    return out


def latency_quantiles(sums: I64) -> Features:
    hist = sums[:, HIST0 : HIST0 + N_LATENCY_BINS]
    p50, p95, p99 = hist_quantiles(hist, (0.50, 0.95, 0.99))
    return {"latency_p50_ms": p50, "latency_p95_ms": p95, "latency_p99_ms": p99}


def retry_coherence(counts: I64) -> F64:
    """Concentration of per-bucket counts (keys, buckets) in time -> [0, 1] per key.

    ``1 - (eff - 1) / (n - 1)`` where ``eff = 1 / sum(p_i^2)`` is the effective number of occupied
    buckets (participation ratio), with the unbiased estimate
    ``sum(p_i^2) = (sum x_i^2 - N) / (N (N - 1))``: ~0 for independent (Poisson) arrivals at any
    rate, 1 when all land in one bucket, ~0.75 for three in-phase waves in ten buckets.
    """
    x = counts.astype(np.float64)
    n_b = x.shape[1]
    if n_b < 2:
        return np.zeros(x.shape[0])
    total = x.sum(axis=1)
    simpson = ratio((x * x).sum(axis=1) - total, total * (total - 1.0))
    eff = ratio(np.ones_like(simpson), np.clip(simpson, 1.0 / n_b, 1.0), empty=float(n_b))
    out: F64 = np.clip(1.0 - (eff - 1.0) / (n_b - 1), 0.0, 1.0) * (total >= 2)
    return out


def tenant_context(
    attempts_short: F64,
    attempts_long: F64,
    endpoint_row: I64,
    is_pair: np.ndarray,
) -> tuple[F64, F64, F64]:
    """(tenant_share per row, active_tenants per row, tenant_mix_shift per row).

    ``endpoint_row[i]`` is the endpoint key's row of pair row ``i`` (own row for endpoint rows).
    Share and mix values are written on pair rows / endpoint rows; other rows get 0 (share 1 for
    endpoint rows).
    """
    k = attempts_short.shape[0]
    pairs = np.flatnonzero(is_pair)
    ep = endpoint_row[pairs]
    share = np.zeros(k)
    share[pairs] = ratio(attempts_short[pairs], attempts_short[ep])
    share_long = ratio(attempts_long[pairs], attempts_long[ep])
    active = np.zeros(k)
    np.add.at(active, ep, (attempts_short[pairs] > 0).astype(np.float64))
    shift = np.zeros(k)
    np.add.at(shift, ep, 0.5 * np.abs(share[pairs] - share_long))
    active[pairs] = active[ep]
    return share, active, shift
