"""Gateway policies, by name. ``make_policy(name, ctx, params)`` builds one for a run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from sim.context import SimContext
from sim.errors import UnknownPolicyError
from sim.policies.adaptive_concurrency import AdaptiveConcurrencyPolicy
from sim.policies.base import Policy
from sim.policies.client_throttle import ClientThrottlePolicy
from sim.policies.retry_budget import RetryBudgetPolicy
from sim.policies.simple import BackoffJitterPolicy, DropExpiredPolicy, NonePolicy
from sim.policies.token_bucket import TokenBucketPolicy


def _governor(ctx: SimContext, params: dict[str, Any]) -> Policy:
    from sim.policies.governor import GovernorPolicy  # needs detectors/ and gateway/

    policy: Policy = GovernorPolicy(ctx, params)
    return policy


_FACTORIES: Final[dict[str, Callable[[SimContext, dict[str, Any]], Policy]]] = {
    "none": NonePolicy,
    "backoff-jitter": BackoffJitterPolicy,
    "retry-budget": RetryBudgetPolicy,
    "token-bucket": TokenBucketPolicy,
    "adaptive-concurrency": AdaptiveConcurrencyPolicy,
    "client-throttle": ClientThrottlePolicy,
    "drop-expired": DropExpiredPolicy,
    "governor": _governor,
}
POLICY_NAMES: Final[tuple[str, ...]] = tuple(_FACTORIES)


def make_policy(name: str, ctx: SimContext, params: dict[str, Any] | None = None) -> Policy:
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise UnknownPolicyError(
            f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}"
        ) from None
    return factory(ctx, dict(params or {}))
