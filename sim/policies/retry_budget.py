"""``retry-budget``: Envoy's retry budget (``envoy.config.cluster.v3.CircuitBreakers.Thresholds.
RetryBudget``): concurrent retries to a cluster may not exceed ``budget_percent`` of the active
requests (default 20%), but at least ``min_retry_concurrency`` retries are always allowed
(default 3). A retry over budget is not sent: the request fails with its last error ("retry
overflow"), so the client does not retry it further. Counted per gateway and endpoint.
"""

from __future__ import annotations

from typing import Any

from schemas.columns import APPLIED_CODES, STATUS_REJECTED
from sim.context import SimContext
from sim.model import Attempt
from sim.policies.base import ADMITTED, REJECT, Decision, GatewayPolicy, Policy, check_params, param

_OVERFLOW = Decision(code=REJECT, final=True, applied=APPLIED_CODES["shed"])


def retry_budget_limit(active: int, budget_percent: float, min_retry_concurrency: int) -> float:
    """How many concurrent retries the budget allows with ``active`` requests in flight."""
    return max(float(min_retry_concurrency), budget_percent / 100.0 * active)


class _BudgetGateway(GatewayPolicy):
    __slots__ = ("active", "budget_percent", "min_retry", "retries")

    def __init__(
        self, ctx: SimContext, gateway: int, budget_percent: float, min_retry: int
    ) -> None:
        super().__init__(ctx, gateway)
        n = len(ctx.endpoint_names)
        self.active = [0] * n
        self.retries = [0] * n
        self.budget_percent = budget_percent
        self.min_retry = min_retry

    def admit(self, a: Attempt, now_ms: int) -> Decision:
        ep = a.endpoint
        if a.no > 0:
            allowed = retry_budget_limit(self.active[ep], self.budget_percent, self.min_retry)
            if self.retries[ep] >= allowed:
                return _OVERFLOW
            self.retries[ep] += 1
        self.active[ep] += 1
        return ADMITTED

    def on_result(self, a: Attempt, now_ms: int) -> None:
        if a.status == STATUS_REJECTED:
            return
        ep = a.endpoint
        self.active[ep] -= 1
        if a.no > 0:
            self.retries[ep] -= 1


class RetryBudgetPolicy(Policy):
    name = "retry-budget"

    def __init__(self, ctx: SimContext, params: dict[str, Any]) -> None:
        super().__init__(ctx, params)
        check_params(params, ("budget_percent", "min_retry_concurrency"), self.name)
        self.budget_percent = param(params, "budget_percent", 20.0, self.name)
        self.min_retry = int(param(params, "min_retry_concurrency", 3, self.name))

    def gateway(self, gateway: int) -> GatewayPolicy:
        return _BudgetGateway(self.ctx, gateway, self.budget_percent, self.min_retry)
