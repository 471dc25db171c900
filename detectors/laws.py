"""The control laws: plain arithmetic, vectorized over keys, no learned normal.

Each law is a few lines with a physical meaning; the README of concurrency-limits is the model
(explain the maths, then ten lines). Times are ms, rates per second.

**Concurrency** (``concurrency_limit``). At saturation every slot is busy, so Little's law gives
the service's slots as ``N = mu * S`` (capacity times the mean time in service ``S``, the
answer time without the queue's wait). A cap of ``N * (1 + h)`` requests in flight keeps at most
``h * N`` queued (a wait of about ``h * S``) however fast demand arrives, and it clocks itself: a
slower service (``S`` up, ``mu`` down, ``N`` the same) is followed at once, with no re-measuring.
A cap that binds without any queue at the service may be too low (the capacity it was sized
from is stale, e.g. a fault ended): it grows to ``(1 + h)`` times what is in flight then.

**Retry budget.** Retries add ``r`` attempts per first attempt. At utilization ``rho`` from first
attempts alone the service sees ``rho * (1 + r)``; it keeps pace (no metastable queue after the
trigger is gone) only if ``rho * (1 + r) < 1``. With a safety margin ``m``:

    r = clamp((1 - m) / rho - 1, 0, r_max)                           (``retry_budget``)

``rho >= 1 - m``: no retry fits (first attempts alone fill the service); ``rho -> 0``: ``r_max``.

**Capacity** (``capacity_update``, ``demonstrated_update``): while a queue stands, a service
completes at its capacity, so the rate it answers then is a measurement (successes: timeouts
arrive at whatever rate was admitted, so in a collapse they measure nothing). Without a queue
the service serves what arrives, a lower bound; so is the most successes per second it
completed lately (a maximum that halves per memory). The estimate is the larger of the two:
a queue misread in noisy latencies cannot pull it below what the service demonstrably did.

**Queue growth from completions** (``arrival_ratio``): events are stamped when attempts complete,
so a queue is seen with a lag of its own wait. In FIFO order the wait completions report grows at
``s = 1 - 1 / rho``; inverting it gives the arrival ratio and the wait a new request faces now.

**No-load latency** (``floor_update``): the smallest typical latency seen, a minimum that may rise
by at most a factor 2 per ``relearn_ms`` of evidence. A persistent slowdown by a factor ``k``
becomes the new floor within ``relearn_ms * log2(k)`` (``relearn_time_ms``), a queue that lasts
shorter than that is still measured against the old floor.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from detectors.layout import F64

_Z = NormalDist().inv_cdf


def concurrency_limit(capacity_per_s: float, service_ms: float, headroom: float) -> int:
    """Requests in flight the service holds at saturation, ``capacity x service time`` (Little's
    law), times ``1 + headroom``, at least 1 (0 when the capacity is unknown)."""
    if capacity_per_s <= 0 or service_ms <= 0:
        return 0
    return max(1, math.ceil(capacity_per_s * service_ms / 1000.0 * (1.0 + headroom)))


def retry_budget(rho: F64, margin: float, r_max: float) -> F64:
    """Largest retries per first attempt ``r`` with ``rho * (1 + r) <= 1 - margin``, in
    ``[0, r_max]`` (``rho <= 0``: ``r_max``)."""
    safe = np.maximum(rho, 1e-9)
    out: F64 = np.clip((1.0 - margin) / safe - 1.0, 0.0, r_max)
    return out


def capacity_update(
    measured_per_s: F64, served_per_s: F64, queued: np.ndarray, gain: float
) -> F64:
    """The capacity measurement: towards the served rate by ``gain`` while a queue stands (a
    saturated service serves at its capacity), kept otherwise. 0 means unknown."""
    moved = np.where(measured_per_s > 0, measured_per_s + gain * (served_per_s - measured_per_s),
                     served_per_s)
    out: F64 = np.where(queued, moved, measured_per_s)
    return out


def demonstrated_update(demonstrated_per_s: F64, ok_per_s: F64, decay: float) -> F64:
    """The most successes per second the service completed lately (halving per memory): a lower
    bound of its capacity that needs no model of the service."""
    out: F64 = np.maximum(ok_per_s, demonstrated_per_s * decay)
    return out


def decay_per_step(step_ms: int, half_life_ms: int) -> float:
    """Per-evaluation factor of a quantity that halves every ``half_life_ms``."""
    return math.pow(0.5, step_ms / half_life_ms)


def arrival_ratio(slope: F64) -> F64:
    """Arrivals over capacity ``rho`` from the slope ``s`` (ms per ms) of the wait that completions
    report. In a FIFO queue growing at ``rho - 1`` seconds of wait per second, a request completing
    at ``t`` arrived a wait earlier, so the reported wait grows at ``s = 1 - 1 / rho``:
    ``rho = 1 / (1 - s)`` (``s < 1``), and the wait a request arriving now faces is ``rho`` times
    the reported one."""
    out: F64 = 1.0 / np.maximum(1.0 - slope, 1e-6)
    return out


def ewma_alpha(step_ms: int, tau_ms: int) -> float:
    """Per-step weight of an exponential average with time constant ``tau_ms``."""
    return 1.0 - math.exp(-step_ms / tau_ms)


def trend_slope(fast: F64, slow: F64, tau_fast_ms: int, tau_slow_ms: int) -> F64:
    """Slope (units per ms) of a linear ramp from two exponential averages of it: each lags the
    ramp by its time constant times the slope, so ``fast - slow = slope * (tau_slow - tau_fast)``.
    """
    out: F64 = (fast - slow) / float(tau_slow_ms - tau_fast_ms)
    return out


def floor_growth(step_ms: int, relearn_ms: int) -> float:
    """Per-evaluation factor by which the latency floor may rise: 2 per ``relearn_ms``."""
    return math.pow(2.0, step_ms / relearn_ms)


def floor_update(floor_ms: F64, latency_ms: F64, valid: np.ndarray, growth: float) -> F64:
    """Minimum tracker with bounded re-learning: ``min(latency, floor * growth)`` where the
    measurement is ``valid``; unknown floors (0) take the measurement."""
    grown = np.where(floor_ms > 0, np.minimum(latency_ms, floor_ms * growth), latency_ms)
    out: F64 = np.where(valid, grown, floor_ms)
    return out


def log_spread(median_ms: F64, low_ms: F64, q: float) -> F64:
    """The answers' spread as a log-normal's sigma, from their median and ``q`` quantile:
    ``ln(median / low) / (z(0.5) - z(q))`` (0 where either is unknown)."""
    gap = _Z(0.5) - _Z(q)
    ok = (median_ms > 0) & (low_ms > 0)
    safe_low = np.where(ok, low_ms, 1.0)
    safe_med = np.where(ok, np.maximum(median_ms, safe_low), 1.0)
    out: F64 = np.where(ok, np.log(safe_med / safe_low) / gap, 0.0)
    return out


def quantile_se(spread: F64, n: F64, q: float) -> F64:
    """Standard error of the log of a sample's ``q`` quantile from ``n`` log-normal answers
    of spread ``spread``: ``spread * sqrt(q (1 - q)) / (phi(z(q)) sqrt(n))`` (asymptotic order
    statistics; for ``n = 0`` that of one answer)."""
    z = _Z(q)
    density = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    factor = math.sqrt(q * (1.0 - q)) / density
    out: F64 = spread * factor / np.sqrt(np.maximum(n, 1.0))
    return out


def relearn_time_ms(factor: float, relearn_ms: int) -> float:
    """How long a persistent latency change by ``factor`` (> 1) takes to become the floor."""
    return 0.0 if factor <= 1.0 else relearn_ms * math.log2(factor)
