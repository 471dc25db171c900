"""``token-bucket``: static per-tenant rate limits at the fair share.

Each tenant may send ``headroom × capacity / n`` attempts per second to an endpoint, where
``capacity`` is the endpoint's nominal throughput (slots ÷ mean service time, without faults) and
``n`` the number of tenants that use it. The limit is split evenly over the gateways; each gateway
keeps one bucket per (tenant, endpoint) with ``burst_s`` seconds of tokens. An attempt that finds
the bucket empty is rejected with ``retry_after_ms`` = the time until the next token.
Parameters: ``headroom`` (1.0), ``burst_s`` (1.0).
"""

from __future__ import annotations

import math
from typing import Any

from schemas.columns import APPLIED_CODES
from sim.context import SimContext
from sim.model import Attempt
from sim.policies.base import ADMITTED, REJECT, Decision, GatewayPolicy, Policy, check_params, param
from sim.trace import mean_tokens

_THROTTLE = APPLIED_CODES["throttle"]


class TokenBucket:
    """A classic token bucket in integer-ms time: ``rate_per_s`` refill, ``burst`` capacity."""

    __slots__ = ("burst", "last_ms", "rate_per_ms", "tokens")

    def __init__(self, rate_per_s: float, burst: float, now_ms: int = 0) -> None:
        self.rate_per_ms = rate_per_s / 1000.0
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.last_ms = now_ms

    def take(self, now_ms: int) -> int:
        """Take one token: 0 when admitted, else the ms until a token is available."""
        if now_ms > self.last_ms:
            self.tokens = min(self.burst, self.tokens + (now_ms - self.last_ms) * self.rate_per_ms)
            self.last_ms = now_ms
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0
        if self.rate_per_ms <= 0.0:
            return 1000
        return max(1, math.ceil((1.0 - self.tokens) / self.rate_per_ms))


def nominal_capacity_per_s(ctx: SimContext) -> list[float]:
    """Each endpoint's throughput without faults: slots × 1000 / mean service ms, with the mean
    tokens of the tenants that call it."""
    out = []
    for i, svc in enumerate(ctx.scenario.services):
        tins, touts = [], []
        for t, ten in enumerate(ctx.scenario.tenants):
            if i in ctx.tenant_endpoints(t) and ten.tokens != "none":
                tin, tout = mean_tokens(ten.tokens)
                tins.append(tin)
                touts.append(tout)
        mean_in = sum(tins) / len(tins) if tins else 0.0
        mean_out = sum(touts) / len(touts) if touts else 0.0
        out.append(svc.slots * 1000.0 / svc.mean_service_ms(mean_in, mean_out))
    return out


class _BucketGateway(GatewayPolicy):
    __slots__ = ("buckets",)

    def __init__(self, ctx: SimContext, gateway: int, buckets: dict[tuple[int, int], TokenBucket]):
        super().__init__(ctx, gateway)
        self.buckets = buckets

    def admit(self, a: Attempt, now_ms: int) -> Decision:
        b = self.buckets.get((a.tenant, a.endpoint))
        if b is None:
            return ADMITTED
        wait = b.take(now_ms)
        if wait == 0:
            return ADMITTED
        return Decision(code=REJECT, retry_after_ms=wait, applied=_THROTTLE)


class TokenBucketPolicy(Policy):
    name = "token-bucket"

    def __init__(self, ctx: SimContext, params: dict[str, Any]) -> None:
        super().__init__(ctx, params)
        check_params(params, ("headroom", "burst_s"), self.name)
        self.headroom = param(params, "headroom", 1.0, self.name)
        self.burst_s = param(params, "burst_s", 1.0, self.name)
        cap = nominal_capacity_per_s(ctx)
        n_tenants = len(ctx.tenant_names)
        users = [sum(1 for t in range(n_tenants) if e in ctx.tenant_endpoints(t))
                 for e in range(len(cap))]
        self.rate_per_s = {
            (t, e): self.headroom * cap[e] / users[e] / ctx.scenario.gateways
            for t in range(n_tenants)
            for e in ctx.tenant_endpoints(t)
        }

    def gateway(self, gateway: int) -> GatewayPolicy:
        buckets = {k: TokenBucket(r, r * self.burst_s) for k, r in self.rate_per_s.items()}
        return _BucketGateway(self.ctx, gateway, buckets)
