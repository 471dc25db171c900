"""Live service quantities that need no learned normal: capacity, no-load latency, queue wait,
clients' patience. One tracker per governor, rows aligned with the window store's keys.

Per evaluation (``update``), from the fast window (300 ms), the detection window (1 s), the mid
window (10 s) and the memory (60 s):

- ``ok_p50_ms``: median latency of successful attempts (the service's answer time), over the fast
  window when it holds enough successes, else the detection window;
- ``latency_floor_ms``: no-load latency at the ``wait_quantile`` (20 %) of answers,
  ``laws.floor_update`` of the mid window's quantile once the key has answered for
  ``settle_ms`` (its first completions are its quickest), re-learnt upwards in bounded time,
  and held while a cap holds the key's requests back at the gateways (``capped_share``: the
  answers are then what the cap lets in, and a floor learnt from a cap set too high would raise
  it further; the cap's own upward probe covers a service that really got slower);
- ``observed_wait_ms``: the shift of that low quantile now (fast window, else detection window)
  over the floor. Every request in a FIFO queue waits the queue's wait, the quick ones too, so
  the low quantile moves by the wait, while a heavy tail without a queue leaves it in place. It
  is the wait of requests that *arrived* one wait ago (events are stamped at completion);
- ``arrival_ratio``: arrivals over capacity, ``laws.arrival_ratio`` of the reported wait's growth
  (its trend, ``laws.trend_slope`` of two exponential averages), while a queue stands;
- ``queue_wait_ms``: the wait a request arriving now faces, ``observed x arrival_ratio``;
- ``queued``: 1 when the wait is at least ``queue_share`` of the floor and ``queue_min_ms`` and
  beyond the low quantile's sampling noise (``queue_confidence`` standard errors), or when most
  answers the clients waited for came too late (``gone_share``);
- ``capacity_per_s``: while a queue stands and answers come, the successes per second measured
  then (``laws.capacity_update``: a busy service serves its capacity); otherwise the larger of
  that and ``laws.demonstrated_update`` (the most successes per second lately). Successes only:
  in a collapse timeouts arrive at the admitted rate, not at the capacity;
- ``patience_ms``: how long clients wait before they give up: the mean latency of timed-out
  attempts over the memory, kept once seen, counted only while it outlasts the memory's typical
  answer (``patience_quantile``, 90 %: stragglers of a heavy tail that time out after traffic
  stops are not a queue; 0 = not known);
- ``utilization``: first attempts per second / capacity (0 when capacity is unknown).

Everything is in event time and follows ``grow``/``keep`` like a detector's state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors import laws
from detectors.errors import ConfigError
from detectors.features import Features, ratio
from detectors.layout import (
    F64,
    HIST0,
    I64,
    N_LATENCY_BINS,
    SUCCESSES,
    TIMEOUT_LATENCY_SUM_MS,
    TIMEOUTS,
    hist_quantiles,
)


@dataclass(frozen=True, slots=True)
class CapacityConfig:
    """- ``relearn_ms``: the latency floor may double per this much event time with traffic (a
      1.6x slower model is the new normal after ``relearn_ms * log2(1.6)`` = 20 s);
    - ``min_successes``: successes in the detection window for a latency measurement;
    - ``queue_share`` / ``queue_min_ms``: a queue stands when the wait is at least this share of
      the floor and at least this many ms (below that it is the noise of one window's quantile);
    - ``capacity_gain``: how far one evaluation moves the measured capacity towards the served
      rate while queued;
    - ``capacity_memory_ms``: the demonstrated capacity halves per this much event time unless
      the service serves it again;
    - ``gone_share``: when at least this share of the answers clients waited for (successes and
      timeouts) times out, the wait is taken to be at least the clients' patience (too few
      answers remain to measure it);
    - ``max_slope``: the reported wait's growth is clipped here (``rho <= 1 / (1 - max_slope)``);
    - ``wait_quantile``: the answer quantile whose shift over its floor is the queue wait;
    - ``trend_fast_ms`` / ``trend_slow_ms``: time constants of the two averages of the wait whose
      difference is its growth (``laws.trend_slope``);
    - ``settle_ms``: answering time of a key before its floor is measured;
    - ``capped_share``: the share of a key's attempts held back or refused by a throttle or
      cap at which its floor stops re-learning (see the module docstring);
    - ``queue_confidence``: how many standard errors of the low quantile (``laws.quantile_se``,
      from the window's successes and the answers' spread) its shift over the floor must exceed
      to count as a queue: a quantile of a dozen heavy-tailed answers moves by half its value
      by chance alone.
    """

    relearn_ms: int = 30_000
    min_successes: int = 10
    queue_share: float = 0.5
    queue_min_ms: int = 20
    capacity_gain: float = 0.3
    capacity_memory_ms: int = 10_000
    max_slope: float = 0.95
    gone_share: float = 0.5
    wait_quantile: float = 0.2
    trend_fast_ms: int = 1_000
    trend_slow_ms: int = 5_000
    settle_ms: int = 3_000
    queue_confidence: float = 3.0
    patience_quantile: float = 0.9
    capped_share: float = 0.02

    def __post_init__(self) -> None:
        if self.relearn_ms <= 0:
            raise ConfigError("CapacityConfig.relearn_ms must be > 0")
        if self.min_successes < 1:
            raise ConfigError("CapacityConfig.min_successes must be >= 1")
        if not self.queue_share > 0 or self.queue_min_ms < 0:
            raise ConfigError("CapacityConfig.queue_share must be > 0, queue_min_ms >= 0")
        if not 0 < self.capacity_gain <= 1:
            raise ConfigError("CapacityConfig.capacity_gain must be in (0, 1]")
        if not 0 < self.wait_quantile <= 0.5:
            raise ConfigError("CapacityConfig.wait_quantile must be in (0, 0.5]")
        if not 0 < self.trend_fast_ms < self.trend_slow_ms:
            raise ConfigError("CapacityConfig: 0 < trend_fast_ms < trend_slow_ms")
        if self.capacity_memory_ms <= 0:
            raise ConfigError("CapacityConfig.capacity_memory_ms must be > 0")
        if not 0 < self.capped_share <= 1:
            raise ConfigError("CapacityConfig.capped_share must be in (0, 1]")
        if self.queue_confidence < 0:
            raise ConfigError("CapacityConfig.queue_confidence must be >= 0")


class CapacityTracker:
    def __init__(self, config: CapacityConfig, bucket_ms: int) -> None:
        self.config = config
        self._step_ms = float(bucket_ms)
        self._a_fast = laws.ewma_alpha(bucket_ms, config.trend_fast_ms)
        self._a_slow = laws.ewma_alpha(bucket_ms, config.trend_slow_ms)
        self._growth = laws.floor_growth(bucket_ms, config.relearn_ms)
        self._decay = laws.decay_per_step(bucket_ms, config.capacity_memory_ms)
        # running state, one value per key (0 = not known yet)
        self.floor_ms: F64 = np.zeros(0)
        self.measured_per_s: F64 = np.zeros(0)
        self.demonstrated_per_s: F64 = np.zeros(0)
        self.patience_ms: F64 = np.zeros(0)
        self.age_ms: F64 = np.zeros(0)  # event time with answers measured, per key
        self.wait_fast_ms: F64 = np.zeros(0)  # EWMAs of the observed wait: its trend
        self.wait_slow_ms: F64 = np.zeros(0)

    _STATE = (
        "floor_ms",
        "measured_per_s",
        "demonstrated_per_s",
        "patience_ms",
        "age_ms",
        "wait_fast_ms",
        "wait_slow_ms",
    )

    def __len__(self) -> int:
        return int(self.floor_ms.shape[0])

    def grow(self, k: int) -> None:
        extra = k - len(self)
        if extra > 0:
            for name in self._STATE:
                setattr(self, name, np.concatenate([getattr(self, name), np.zeros(extra)]))

    def keep(self, mask: np.ndarray) -> None:
        for name in self._STATE:
            setattr(self, name, getattr(self, name)[mask])

    def update(
        self,
        f: Features,
        short: I64,
        fast: I64,
        mid: I64,
        memory: I64,
        services: np.ndarray,
    ) -> Features:
        """Add the quantities above to ``f`` (features of the detection window), from the sums
        of the window (``short``), of the fast window (``fast``: the latency is measured there
        when it holds ``min_successes``, so a queue shows within a few hundred ms), of the mid
        window (``mid``: the floor's measurement) and of the memory (``memory``: patience).
        Only the rows in ``services`` (the endpoint keys: a capacity is a
        service's) are measured; the others stay 0, as for a key with no traffic."""
        c = self.config
        self.grow(short.shape[0])
        hist = HIST0 + N_LATENCY_BINS
        fast_ok = services & (fast[:, SUCCESSES] >= c.min_successes)
        rows = np.flatnonzero(services)
        n = rows.shape[0]
        # one quantile pass over the three windows' histograms of the service rows
        stacked = np.concatenate(
            [short[rows, HIST0:hist], fast[rows, HIST0:hist], mid[rows, HIST0:hist]]
        )
        med, low = hist_quantiles(stacked, (0.5, c.wait_quantile))

        def per_key(v: F64, part: int) -> F64:
            out = np.zeros(short.shape[0])
            out[rows] = v[part * n : (part + 1) * n]
            return out

        p50 = np.where(fast_ok, per_key(med, 1), per_key(med, 0))
        low_short, low_fast, low_mid = per_key(low, 0), per_key(low, 1), per_key(low, 2)
        valid = services & (f["successes"] >= c.min_successes)
        self.age_ms = np.where(valid, self.age_ms + self._step_ms, self.age_ms)
        # the floor follows the mid window's low quantile (many samples: little noise, so the
        # minimum tracker is not dragged below the truth by one quiet window's luck), once the
        # key has answered for ``settle_ms``: the first completions of a key are the quick ones
        # (the slow ones of the same arrivals complete later), which would set it too low
        settled = valid & (self.age_ms >= c.settle_ms)
        # while a cap holds requests back at the gateways the service's answers are what the
        # cap lets in: a cap set too high queues in the service, and a floor learnt from those
        # answers would raise the cap that queues them (a creeping loop); a cap too low is
        # probed upwards by its own plan instead (``overload.plan``)
        capped = ratio(f["throttled"], f["attempts"]) >= c.capped_share
        settled = settled & ~capped
        self.floor_ms = laws.floor_update(self.floor_ms, low_mid, settled, self._growth)
        known = valid & (self.floor_ms > 0)
        low_now = np.where(fast_ok, low_fast, low_short)
        observed = np.where(known, np.maximum(low_now - self.floor_ms, 0.0), 0.0)
        # a shift is a queue only beyond the quantile's noise in a window it was read from (the
        # fast one, or the detection window's more answers): the answers' spread (log-normal
        # shape, from the mid window's median over its low quantile) and the successes counted
        spread = laws.log_spread(per_key(med, 2), low_mid, c.wait_quantile)
        significant = np.zeros(short.shape[0], dtype=bool)
        for low_w, sums in ((low_fast, fast), (low_short, short)):
            n_w = sums[:, SUCCESSES].astype(np.float64)
            noise = laws.quantile_se(spread, n_w, c.wait_quantile)
            shift = np.log(ratio(low_w, self.floor_ms, empty=1.0) + 1e-12)
            significant |= (n_w > 0) & (shift >= c.queue_confidence * noise)
        # FIFO geometry: completions report the wait of requests that arrived a wait ago, so
        # the reported wait grows at s = 1 - 1/rho while the queue grows at rho - 1
        self.wait_fast_ms = np.where(
            known, self.wait_fast_ms + self._a_fast * (observed - self.wait_fast_ms), 0.0
        )
        self.wait_slow_ms = np.where(
            known, self.wait_slow_ms + self._a_slow * (observed - self.wait_slow_ms), 0.0
        )
        trend = laws.trend_slope(
            self.wait_fast_ms, self.wait_slow_ms, c.trend_fast_ms, c.trend_slow_ms
        )
        slope = np.where(known, np.clip(trend, 0.0, c.max_slope), 0.0)
        rho = laws.arrival_ratio(slope)
        wait = observed * rho  # the wait a request arriving now faces
        queued = (
            known
            & significant
            & (observed >= c.queue_share * self.floor_ms)
            & (observed >= c.queue_min_ms)
        )
        mem_timeouts = np.where(services, memory[:, TIMEOUTS], 0).astype(np.float64)
        seen = ratio(memory[:, TIMEOUT_LATENCY_SUM_MS].astype(np.float64), mem_timeouts)
        self.patience_ms = np.where(mem_timeouts > 0, seen, self.patience_ms)
        # a client's patience outlasts the answers it waited for: timeouts quicker than most
        # answers (the memory's ``patience_quantile``) are not the clients' (an upstream's limit,
        # a cancelled stream, a mix of clients none of whom waits that long for all its answers)
        # most answers the clients waited for came too late (timeouts over successes and
        # timeouts: fast failures, e.g. a full queue's, are not waits): too few answers to
        # measure a wait, but the queue holds at least the clients' patience of work (a
        # metastable collapse serves only dead work). Then the timeouts are the typical answer,
        # not a heavy tail's stragglers, and their latency is the clients' patience whatever
        # the answers of more patient clients took
        mostly_late = ratio(f["timeouts"], f["timeouts"] + f["successes"]) >= c.gone_share
        (typical,) = hist_quantiles(memory[rows, HIST0:hist], (c.patience_quantile,))
        outlasts = (self.patience_ms >= per_key(typical, 0)) | mostly_late
        patience = np.where(outlasts, self.patience_ms, 0.0)
        gone = services & mostly_late & (patience > 0)
        observed = np.where(gone, np.maximum(observed, patience - self.floor_ms), observed)
        wait = np.where(gone, np.maximum(wait, observed), wait)
        queued = queued | gone
        # successes only: in a collapse timeouts come at the admitted rate, not the capacity
        served = np.where(services, f["throughput_per_s"], 0.0)
        self.measured_per_s = laws.capacity_update(
            self.measured_per_s, served, queued, c.capacity_gain
        )
        self.demonstrated_per_s = laws.demonstrated_update(
            self.demonstrated_per_s, served, self._decay
        )
        # while a queue stands and answers come, the service is busy: what it serves is its
        # capacity now (a slower service serves less than it demonstrated a minute ago); else
        # (no queue, or a collapse that answers almost nothing) the larger of the last
        # measurement and the demonstrated capacity
        capacity = np.where(
            queued & ~gone,
            self.measured_per_s,
            np.maximum(self.measured_per_s, self.demonstrated_per_s),
        )
        f["ok_p50_ms"] = p50
        f["latency_floor_ms"] = self.floor_ms.copy()
        f["queue_wait_ms"] = wait
        f["observed_wait_ms"] = observed
        f["arrival_ratio"] = np.where(queued, rho, 0.0)
        f["queued"] = queued.astype(np.float64)
        f["capacity_per_s"] = capacity
        f["patience_ms"] = patience
        f["utilization"] = ratio(f["intent_rate_per_s"], capacity)
        return f
