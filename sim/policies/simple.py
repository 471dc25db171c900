"""The baseline policies: ``none``, ``drop-expired`` and ``backoff-jitter``.

- ``none``: the gateway admits everything; clients keep their own retry behaviour.
- ``drop-expired``: services discard queued work whose client already gave up (timed out) when it
  reaches the head of the queue, instead of serving it.
- ``backoff-jitter``: the gateway SDK replaces every client's retry delay by AWS "full jitter"
  (Brooker, "Exponential Backoff And Jitter", 2015): sleep = random(0, min(cap, base · 2^n)) before
  retry n (n = 0 for the first retry). Parameters: ``base_ms`` (100), ``cap_ms`` (10,000).
"""

from __future__ import annotations

from typing import Any

from sim.backoff import full_jitter_ms
from sim.context import SimContext
from sim.model import Attempt
from sim.policies.base import GatewayPolicy, Policy, check_params, param


class NonePolicy(Policy):
    name = "none"


class DropExpiredPolicy(Policy):
    name = "drop-expired"
    drop_expired = True


class _FullJitterGateway(GatewayPolicy):
    __slots__ = ("base_ms", "cap_ms")

    def __init__(self, ctx: SimContext, gateway: int, base_ms: int, cap_ms: int) -> None:
        super().__init__(ctx, gateway)
        self.base_ms = base_ms
        self.cap_ms = cap_ms

    def retry_delay_ms(self, a: Attempt, client_ms: int) -> int:
        return full_jitter_ms(self.base_ms, self.cap_ms, a.no, self.ctx.rng)


class BackoffJitterPolicy(Policy):
    name = "backoff-jitter"

    def __init__(self, ctx: SimContext, params: dict[str, Any]) -> None:
        super().__init__(ctx, params)
        check_params(params, ("base_ms", "cap_ms"), self.name)
        self.base_ms = int(param(params, "base_ms", 100, self.name))
        self.cap_ms = int(param(params, "cap_ms", 10_000, self.name))

    def gateway(self, gateway: int) -> GatewayPolicy:
        return _FullJitterGateway(self.ctx, gateway, self.base_ms, self.cap_ms)
