"""``adaptive-concurrency``: Envoy's adaptive-concurrency filter, gradient controller.

Per gateway and endpoint, every ``update_interval_ms`` (100) the controller summarises the latency
samples of the window (``sample_percentile``, p50) as sampleRTT and sets

    gradient = clamp(0.5, 2.0, minRTT · (1 + buffer) / sampleRTT)      (buffer = 0.25)
    limit    = clamp(min_concurrency, max_limit, gradient · limit + √(gradient · limit))

(the √ term is Envoy's fixed "burst headroom", the queue-size allowance). minRTT is measured at
start and every ``min_rtt_interval_ms`` (60 s, delayed by a random ``jitter_pct`` (10%) of it), and
whenever the limit sat at the minimum for 5 consecutive windows: the limit is pinned to
``min_concurrency`` (3) until ``min_rtt_request_count`` (50) samples are in; their percentile is the
new minRTT and the previous limit is restored. Requests over the limit get a 503 (the client may
retry per its own policy).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from schemas.columns import APPLIED_CODES, STATUS_OK, STATUS_REJECTED
from sim.context import SimContext
from sim.model import Attempt
from sim.policies.base import ADMITTED, REJECT, Decision, GatewayPolicy, Policy, check_params, param

_BLOCKED = Decision(code=REJECT, applied=APPLIED_CODES["shed"])


def gradient_update(limit: float, min_rtt_ms: float, sample_rtt_ms: float, buffer: float,
                    min_limit: int, max_limit: int) -> tuple[int, float]:
    """One gradient-controller step: (new limit, gradient)."""
    gradient = min(2.0, max(0.5, min_rtt_ms * (1.0 + buffer) / sample_rtt_ms))
    scaled = gradient * limit
    new = int(scaled + math.sqrt(scaled))
    return max(min_limit, min(max_limit, new)), gradient


class GradientController:
    __slots__ = ("at_min_windows", "buffer", "in_min_rtt", "inflight", "interval_ms", "jitter_pct",
                 "limit", "max_limit", "min_conc", "min_rtt_count", "min_rtt_ms", "next_min_rtt_ms",
                 "next_update_ms", "percentile", "rng", "samples", "saved_limit", "update_ms")

    def __init__(self, p: dict[str, float], rng: Any, now_ms: int = 0) -> None:
        self.update_ms = int(p["update_interval_ms"])
        self.percentile = p["sample_percentile"]
        self.buffer = p["buffer_pct"] / 100.0
        self.min_conc = int(p["min_concurrency"])
        self.max_limit = int(p["max_limit"])
        self.interval_ms = int(p["min_rtt_interval_ms"])
        self.jitter_pct = p["jitter_pct"]
        self.min_rtt_count = int(p["min_rtt_request_count"])
        self.rng = rng
        self.inflight = 0
        self.samples: list[int] = []
        self.min_rtt_ms = 0.0
        self.limit = self.min_conc
        self.saved_limit = self.min_conc
        self.in_min_rtt = True  # Envoy starts by measuring minRTT
        self.at_min_windows = 0
        self.next_update_ms = now_ms + self.update_ms
        self.next_min_rtt_ms = 0

    def _start_min_rtt(self) -> None:
        self.in_min_rtt = True
        self.saved_limit = self.limit
        self.limit = self.min_conc
        self.samples = []

    def _tick(self, now_ms: int) -> None:
        if now_ms >= self.next_min_rtt_ms and not self.in_min_rtt and self.next_min_rtt_ms > 0:
            self._start_min_rtt()
        if now_ms < self.next_update_ms:
            return
        self.next_update_ms = now_ms + self.update_ms
        if self.in_min_rtt or not self.samples:
            return
        sample = float(np.percentile(self.samples, self.percentile))
        self.samples = []
        self.limit, _ = gradient_update(self.limit, self.min_rtt_ms, max(sample, 1.0),
                                        self.buffer, self.min_conc, self.max_limit)
        self.at_min_windows = self.at_min_windows + 1 if self.limit <= self.min_conc else 0
        if self.at_min_windows >= 5:
            self.at_min_windows = 0
            self._start_min_rtt()

    def try_acquire(self, now_ms: int) -> bool:
        self._tick(now_ms)
        if self.inflight >= self.limit:
            return False
        self.inflight += 1
        return True

    def release(self, now_ms: int, latency_ms: int | None) -> None:
        self.inflight -= 1
        if latency_ms is not None:
            self.samples.append(latency_ms)
            if self.in_min_rtt and len(self.samples) >= self.min_rtt_count:
                self.min_rtt_ms = float(np.percentile(self.samples, self.percentile))
                self.samples = []
                self.in_min_rtt = False
                self.limit = max(self.min_conc, self.saved_limit)
                jitter = self.rng.random() * self.jitter_pct / 100.0 * self.interval_ms
                self.next_min_rtt_ms = now_ms + self.interval_ms + int(jitter)
        self._tick(now_ms)


DEFAULTS: dict[str, float] = {
    "update_interval_ms": 100,
    "sample_percentile": 50,
    "buffer_pct": 25,
    "min_concurrency": 3,
    "max_limit": 1000,
    "min_rtt_interval_ms": 60_000,
    "jitter_pct": 10,
    "min_rtt_request_count": 50,
}


class _ConcurrencyGateway(GatewayPolicy):
    __slots__ = ("ctl",)

    def __init__(self, ctx: SimContext, gateway: int, p: dict[str, float]) -> None:
        super().__init__(ctx, gateway)
        self.ctl = [GradientController(p, ctx.rng) for _ in ctx.endpoint_names]

    def admit(self, a: Attempt, now_ms: int) -> Decision:
        return ADMITTED if self.ctl[a.endpoint].try_acquire(now_ms) else _BLOCKED

    def on_result(self, a: Attempt, now_ms: int) -> None:
        if a.status == STATUS_REJECTED:
            return
        latency = now_ms - a.dispatch_ms if a.status == STATUS_OK else None
        self.ctl[a.endpoint].release(now_ms, latency)


class AdaptiveConcurrencyPolicy(Policy):
    name = "adaptive-concurrency"

    def __init__(self, ctx: SimContext, params: dict[str, Any]) -> None:
        super().__init__(ctx, params)
        check_params(params, tuple(DEFAULTS), self.name)
        self.p = {k: param(params, k, v, self.name) for k, v in DEFAULTS.items()}

    def gateway(self, gateway: int) -> GatewayPolicy:
        return _ConcurrencyGateway(self.ctx, gateway, self.p)
