"""Live service quantities that need no learned normal: capacity, no-load latency, queue wait,
clients' patience. One tracker per governor, rows aligned with the window store's keys.

Per evaluation (``update``), from the detection window (1 s) and the memory (60 s):

- ``ok_p50_ms``: median latency of successful attempts (the service's answer time), over the fast
  window (300 ms) when it holds enough successes, else the detection window;
- ``latency_floor_ms``: no-load latency, ``laws.floor_update`` of ``ok_p50_ms`` (the smallest
  typical answer time, re-learnt upwards in bounded time);
- ``observed_wait_ms``: ``max(0, ok_p50_ms - latency_floor_ms)``: every request in a FIFO queue
  waits the queue's wait on top of its service time, so the median moves by the wait. It is the
  wait of requests that *arrived* one wait ago (events are stamped at completion);
- ``arrival_ratio``: arrivals over capacity from the queue's growth (``laws.arrival_ratio`` of the
  reported wait's slope between the fast and the detection window), while a queue stands;
- ``queue_wait_ms``: the wait a request arriving now faces, ``observed x arrival_ratio``;
- ``queued``: 1 when the wait is at least ``queue_share`` of the floor and ``queue_min_ms``;
- ``capacity_per_s``: the larger of ``laws.capacity_update`` (the throughput measured while
  queued) and ``laws.demonstrated_update`` (the most successes per second lately). Successes only:
  in a collapse timeouts arrive at the admitted rate, not at the capacity;
- ``patience_ms``: how long clients wait before they give up: the mean latency of timed-out
  attempts over the memory, kept once seen (0 = no client has timed out yet);
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
    hist_quantile,
)


@dataclass(frozen=True, slots=True)
class CapacityConfig:
    """- ``relearn_ms``: the latency floor may double per this much event time with traffic (a
      1.6x slower model is the new normal after ``relearn_ms * log2(1.6)`` = 20 s);
    - ``min_successes``: successes in the detection window for a latency measurement;
    - ``queue_share`` / ``queue_min_ms``: a queue stands when the wait is at least this share of
      the floor and at least this many ms (below that it is the noise of one window's median);
    - ``capacity_gain``: how far one evaluation moves the measured capacity towards the served
      rate while queued;
    - ``capacity_memory_ms``: the demonstrated capacity halves per this much event time unless
      the service serves it again;
    - ``gone_share``: when at least this share of attempts times out, the wait is taken to be at
      least the clients' patience (too few answers remain to measure it);
    - ``max_slope``: the reported wait's growth is clipped here (``rho <= 1 / (1 - max_slope)``).
    """

    relearn_ms: int = 30_000
    min_successes: int = 10
    queue_share: float = 0.5
    queue_min_ms: int = 20
    capacity_gain: float = 0.3
    capacity_memory_ms: int = 10_000
    max_slope: float = 0.95
    gone_share: float = 0.5

    def __post_init__(self) -> None:
        if self.relearn_ms <= 0:
            raise ConfigError("CapacityConfig.relearn_ms must be > 0")
        if self.min_successes < 1:
            raise ConfigError("CapacityConfig.min_successes must be >= 1")
        if not self.queue_share > 0 or self.queue_min_ms < 0:
            raise ConfigError("CapacityConfig.queue_share must be > 0, queue_min_ms >= 0")
        if not 0 < self.capacity_gain <= 1:
            raise ConfigError("CapacityConfig.capacity_gain must be in (0, 1]")
        if self.capacity_memory_ms <= 0:
            raise ConfigError("CapacityConfig.capacity_memory_ms must be > 0")


class CapacityTracker:
    def __init__(
        self, config: CapacityConfig, bucket_ms: int, short_ms: int, fast_ms: int
    ) -> None:
        self.config = config
        self._centre_gap_ms = max((short_ms - fast_ms) / 2.0, float(bucket_ms))
        self._growth = laws.floor_growth(bucket_ms, config.relearn_ms)
        self._decay = laws.decay_per_step(bucket_ms, config.capacity_memory_ms)
        # running state, one value per key (0 = not known yet)
        self.floor_ms: F64 = np.zeros(0)
        self.measured_per_s: F64 = np.zeros(0)
        self.demonstrated_per_s: F64 = np.zeros(0)
        self.patience_ms: F64 = np.zeros(0)

    _STATE = ("floor_ms", "measured_per_s", "demonstrated_per_s", "patience_ms")

    def __len__(self) -> int:
        return int(self.floor_ms.shape[0])

    @property
    def capacity_per_s(self) -> F64:
        """The larger of the measurement while queued and the demonstrated capacity."""
        out: F64 = np.maximum(self.measured_per_s, self.demonstrated_per_s)
        return out

    def grow(self, k: int) -> None:
        extra = k - len(self)
        if extra > 0:
            for name in self._STATE:
                setattr(self, name, np.concatenate([getattr(self, name), np.zeros(extra)]))

    def keep(self, mask: np.ndarray) -> None:
        for name in self._STATE:
            setattr(self, name, getattr(self, name)[mask])

    def update(
        self, f: Features, short: I64, fast: I64, memory: I64, services: np.ndarray
    ) -> Features:
        """Add the quantities above to ``f`` (features of the detection window), from the sums
        of the window (``short``), of the fast window (``fast``: the latency is measured there
        when it holds ``min_successes``, so a queue shows within a few hundred ms) and of the
        memory (``memory``). Only the rows in ``services`` (the endpoint keys: a capacity is a
        service's) are measured; the others stay 0, as for a key with no traffic."""
        c = self.config
        self.grow(short.shape[0])
        hist = HIST0 + N_LATENCY_BINS
        fast_ok = services & (fast[:, SUCCESSES] >= c.min_successes)
        rows = np.flatnonzero(services)
        # one quantile pass over both windows' histograms of the service rows
        both = hist_quantile(np.concatenate([short[rows, HIST0:hist], fast[rows, HIST0:hist]]), 0.5)
        p50_short = np.zeros(short.shape[0])
        p50_fast = np.zeros(short.shape[0])
        p50_short[rows], p50_fast[rows] = both[: rows.shape[0]], both[rows.shape[0] :]
        p50 = np.where(fast_ok, p50_fast, p50_short)
        valid = services & (f["successes"] >= c.min_successes)
        self.floor_ms = laws.floor_update(self.floor_ms, p50, valid, self._growth)
        known = valid & (self.floor_ms > 0)
        observed = np.where(known, np.maximum(p50 - self.floor_ms, 0.0), 0.0)
        # FIFO geometry: completions report the wait of requests that arrived a wait ago, so
        # the reported wait grows at s = 1 - 1/rho while the queue grows at rho - 1
        slope = np.where(
            known & fast_ok,
            np.clip((p50_fast - p50_short) / self._centre_gap_ms, 0.0, c.max_slope),
            0.0,
        )
        rho = laws.arrival_ratio(slope)
        wait = observed * rho  # the wait a request arriving now faces
        queued = known & (observed >= c.queue_share * self.floor_ms) & (observed >= c.queue_min_ms)
        mem_timeouts = np.where(services, memory[:, TIMEOUTS], 0).astype(np.float64)
        seen = ratio(memory[:, TIMEOUT_LATENCY_SUM_MS].astype(np.float64), mem_timeouts)
        self.patience_ms = np.where(mem_timeouts > 0, seen, self.patience_ms)
        # most attempts time out: too few answers to measure a wait, but the queue holds at
        # least the clients' patience of work (a metastable collapse serves only dead work)
        gone = (f["timeout_fraction"] >= c.gone_share) & (self.patience_ms > 0) & (
            self.floor_ms > 0
        )
        observed = np.where(gone, np.maximum(observed, self.patience_ms - self.floor_ms), observed)
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
        capacity = self.capacity_per_s
        f["ok_p50_ms"] = p50
        f["latency_floor_ms"] = self.floor_ms.copy()
        f["queue_wait_ms"] = wait
        f["observed_wait_ms"] = observed
        f["arrival_ratio"] = np.where(queued, rho, 0.0)
        f["queued"] = queued.astype(np.float64)
        f["capacity_per_s"] = capacity
        f["patience_ms"] = self.patience_ms.copy()
        f["utilization"] = ratio(f["intent_rate_per_s"], capacity)
        return f
