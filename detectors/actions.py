"""What each detection asks gateways to do, scoped to the evidence (never broader).

- retry_storm (endpoint E): ``defer`` {E, min_attempt=1}; ``shed`` {E, min_attempt=1} of the
  retries beyond the budget (``fraction`` = excess retries / retries);
- saturation (endpoint E): ``defer`` {E, min_priority=p}; then ``shed`` {E, min_priority=p} if
  the score stays high;
- contention (E x tenant T): ``throttle`` {E, T} to a fair share of E's observed capacity,
  ``shares`` per gateway by its observed share of the scope's attempts (mid horizon);
- fanout (tenant T): ``defer`` {T, E if one endpoint carries most of T's sub-requests,
  min_depth=1, min_priority=p}.

``p`` is chosen from the key's observed priority mix (short horizon): the largest ``p`` whose
traffic at priorities >= p covers the excess load, never below ``protected_priorities``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from detectors.config import ActionConfig
from detectors.features import Features
from detectors.layout import I64, N_PRIORITIES, PRIO0
from detectors.policy import Planned
from detectors.scores import Scored
from detectors.windows import Key
from schemas.directive import Action, Scope


@dataclass(frozen=True, slots=True)
class EvalContext:
    """What builders may read at one evaluation (all aligned with ``keys``)."""

    keys: list[Key]
    features: Features
    sums: I64  # short-horizon sums per key
    endpoint_row: I64  # pair rows -> their endpoint row (own row otherwise)
    pairs_of_tenant: dict[str, list[int]]  # tenant -> its pair rows
    gateway_counts: Callable[[str, str], dict[str, int]]  # (endpoint, tenant) -> gateway -> n
    scored: dict[str, Scored]


def priority_floor(prio_counts: I64, excess: float, protected: int) -> tuple[int, float]:
    """(p, share of traffic at priorities >= p): smallest constrained set covering ``excess``."""
    total = float(prio_counts.sum())
    if total <= 0:
        return N_PRIORITIES - 1, 0.0
    tail = np.cumsum(prio_counts[::-1])[::-1] / total  # tail[p] = share at priorities >= p
    p = N_PRIORITIES - 1
    while p > protected and tail[p] < excess:
        p -= 1
    return p, float(tail[p])


def storm(ctx: EvalContext, cfg: ActionConfig, row: int, key: Key) -> list[Planned]:
    scope = Scope(endpoint=key[1], min_attempt=1)
    out = [
        Planned(
            "defer",
            scope,
            Action("defer", hold_ms=cfg.storm_hold_ms, jitter_ms=cfg.storm_jitter_ms),
        )
    ]
    retries = float(ctx.features["retries"][row])
    budget = cfg.retry_budget * float(ctx.features["first_attempts"][row])
    if retries > budget and retries > 0:
        fraction = round((retries - budget) / retries, 3)
        out.append(
            Planned(
                "shed",
                scope,
                Action("shed", fraction=fraction, retry_after_ms=cfg.storm_retry_after_ms),
            )
        )
    return out


def saturation(
    ctx: EvalContext, cfg: ActionConfig, row: int, key: Key, age_ms: int
) -> list[Planned]:
    ratio = float(ctx.scored["saturation"].evidence["latency_ratio"][row])
    excess = min(cfg.max_excess, max(0.0, 1.0 - 1.0 / ratio)) if ratio > 0 else 0.0
    prio = ctx.sums[row, PRIO0 : PRIO0 + N_PRIORITIES]
    p, share = priority_floor(prio, excess, cfg.protected_priorities)
    if share <= 0:
        return []
    scope = Scope(endpoint=key[1], min_priority=p)
    out = [
        Planned(
            "defer",
            scope,
            Action("defer", hold_ms=cfg.saturation_hold_ms, jitter_ms=cfg.saturation_jitter_ms),
        )
    ]
    score = float(ctx.scored["saturation"].score[row])
    if age_ms >= cfg.saturation_escalate_ms and score >= cfg.saturation_shed_score:
        fraction = round(min(1.0, excess / share), 3)
        out.append(
            Planned(
                "shed",
                scope,
                Action("shed", fraction=fraction, retry_after_ms=cfg.saturation_retry_after_ms),
            )
        )
    return out


def contention(ctx: EvalContext, cfg: ActionConfig, row: int, key: Key) -> list[Planned]:
    endpoint, tenant = key[1], key[2]
    ep = int(ctx.endpoint_row[row])
    n = max(float(ctx.features["active_tenants"][row]), 1.0)
    capacity = float(ctx.features["completion_rate_per_s"][ep])
    rate = round(max(capacity / n, 1.0), 3)
    counts = ctx.gateway_counts(endpoint, tenant)
    total = sum(counts.values())
    shares = tuple(sorted((g, round(c / total, 4)) for g, c in counts.items())) if total else ()
    default = round(1.0 / (len(shares) + 1), 4) if shares else 1.0
    action = Action(
        "throttle",
        rate_per_s=rate,
        burst=round(max(1.0, rate * cfg.burst_s), 3),
        shares=shares,
        default_share=default,
    )
    return [Planned("throttle", Scope(endpoint=endpoint, tenant=tenant), action)]


def fanout(ctx: EvalContext, cfg: ActionConfig, row: int, key: Key) -> list[Planned]:
    tenant = key[2]
    growth = float(ctx.features["fanout"][row]) / max(
        float(ctx.scored["fanout"].evidence["fanout_baseline"][row]), 1.0
    )
    excess = min(cfg.max_excess, max(0.0, 1.0 - 1.0 / growth)) if growth > 0 else 0.0
    p, share = priority_floor(
        ctx.sums[row, PRIO0 : PRIO0 + N_PRIORITIES], excess, cfg.protected_priorities
    )
    if share <= 0:
        return []
    endpoint = None
    pair_rows = ctx.pairs_of_tenant.get(tenant, [])
    subs = ctx.features["sub_requests"]
    total = float(subs[row])
    if pair_rows and total > 0:
        top = max(pair_rows, key=lambda r: (float(subs[r]), ctx.keys[r]))
        if float(subs[top]) / total >= cfg.localize_share:
            endpoint = ctx.keys[top][1]
    scope = Scope(endpoint=endpoint, tenant=tenant, min_depth=1, min_priority=p)
    return [
        Planned(
            "defer",
            scope,
            Action("defer", hold_ms=cfg.fanout_hold_ms, jitter_ms=cfg.fanout_jitter_ms),
        )
    ]
