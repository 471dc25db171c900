"""``client-throttle``: adaptive throttling from Google's SRE book ("Handling Overload", ch. 21).

Each client (here: each gateway, per endpoint) counts over the last ``window_s`` seconds (120)
``requests`` (every attempt the application made, including those rejected locally) and
``accepts`` (attempts the backend accepted: it answered, as opposed to timing out or refusing for
overload). A new attempt is rejected locally with probability

    p = max(0, (requests − K · accepts) / (requests + 1)),   K = 2 by default.

Local rejections are not retried by the client (they are the throttle's answer).
"""

from __future__ import annotations

from typing import Any

from schemas.columns import APPLIED_CODES, STATUS_ERROR, STATUS_OK
from sim.context import SimContext
from sim.model import Attempt
from sim.policies.base import ADMITTED, REJECT, Decision, GatewayPolicy, Policy, check_params, param

_LOCAL_REJECT = Decision(code=REJECT, final=True, applied=APPLIED_CODES["throttle"])


def throttle_probability(requests: float, accepts: float, k: float = 2.0) -> float:
    """SRE adaptive-throttling rejection probability."""
    return max(0.0, (requests - k * accepts) / (requests + 1.0))


class SlidingCounts:
    """Requests and accepts in the last ``window_s`` whole seconds (a ring of 1-s buckets)."""

    __slots__ = ("acc", "accepts", "req", "requests", "sec", "window_s")

    def __init__(self, window_s: int) -> None:
        self.window_s = window_s
        self.req = [0] * window_s
        self.acc = [0] * window_s
        self.sec = [-1] * window_s
        self.requests = 0
        self.accepts = 0

    def _slot(self, now_ms: int) -> int:
        s = now_ms // 1000
        i = s % self.window_s
        if self.sec[i] != s:
            self.requests -= self.req[i]
            self.accepts -= self.acc[i]
            self.req[i] = 0
            self.acc[i] = 0
            self.sec[i] = s
            # buckets older than the window that were never overwritten
            for j in range(self.window_s):
                if self.sec[j] >= 0 and s - self.sec[j] >= self.window_s:
                    self.requests -= self.req[j]
                    self.accepts -= self.acc[j]
                    self.req[j] = 0
                    self.acc[j] = 0
                    self.sec[j] = -1
        return i

    def add_request(self, now_ms: int) -> None:
        i = self._slot(now_ms)
        self.req[i] += 1
        self.requests += 1

    def add_accept(self, now_ms: int) -> None:
        i = self._slot(now_ms)
        self.acc[i] += 1
        self.accepts += 1


class _ThrottleGateway(GatewayPolicy):
    __slots__ = ("counts", "k")

    def __init__(self, ctx: SimContext, gateway: int, k: float, window_s: int) -> None:
        super().__init__(ctx, gateway)
        self.k = k
        self.counts = [SlidingCounts(window_s) for _ in ctx.endpoint_names]

    def admit(self, a: Attempt, now_ms: int) -> Decision:
        c = self.counts[a.endpoint]
        c.add_request(now_ms)
        p = throttle_probability(c.requests - 1, c.accepts, self.k)
        if p > 0.0 and self.ctx.rng.random() < p:
            return _LOCAL_REJECT
        return ADMITTED

    def on_result(self, a: Attempt, now_ms: int) -> None:
        if a.status == STATUS_OK or (a.status == STATUS_ERROR and a.svc_ms > 0):
            self.counts[a.endpoint].add_accept(now_ms)


class ClientThrottlePolicy(Policy):
    name = "client-throttle"

    def __init__(self, ctx: SimContext, params: dict[str, Any]) -> None:
        super().__init__(ctx, params)
        check_params(params, ("k", "window_s"), self.name)
        self.k = param(params, "k", 2.0, self.name)
        self.window_s = int(param(params, "window_s", 120, self.name))

    def gateway(self, gateway: int) -> GatewayPolicy:
        return _ThrottleGateway(self.ctx, gateway, self.k, self.window_s)
