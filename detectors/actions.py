"""What each detection asks gateways to do, scoped to the evidence (never broader).

- retry_storm (endpoint E): ``defer`` {E, min_attempt=1, min_priority=protected}; ``shed`` (same
  scope) of the retries beyond the budget (``fraction`` = excess retries / retries);
- saturation (endpoint E): ``defer`` {E, min_priority=p} and ``throttle`` {E, min_priority=p}
  to what the endpoint serves beyond the priorities above p (``shed`` of the excess, at most
  ``max_excess``, when priorities >= p are all its traffic);
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

from detectors import laws
from detectors.config import ActionConfig
from detectors.features import Features
from detectors.layout import I64, KIND_PAIR, N_PRIORITIES, PRIO0
from detectors.policy import Planned
from detectors.scores import OverloadConfig, Scored
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
    prio = ctx.sums[row, PRIO0 : PRIO0 + N_PRIORITIES]
    if not prio[cfg.protected_priorities :].any():
        return []  # only protected priorities here: nothing this governor may hold or shed
    scope = Scope(endpoint=key[1], min_attempt=1, min_priority=cfg.protected_priorities)
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


def overload(ctx: EvalContext, cfg: ActionConfig, ocfg: OverloadConfig, row: int,
             key: Key) -> list[Planned]:
    """Admit about the capacity, lowest priorities first (``laws.admission_rate``).

    ``a = capacity x (1 + (target wait - wait) / horizon)`` is what the endpoint may be offered;
    the constrained class is the fewest lowest priorities whose demand covers the excess
    ``1 - capacity / demand`` (any priority: when the most important demand alone exceeds capacity,
    admitting more of it only makes all of it late); it is throttled to what the priorities
    above leave, ``max(0, a - above)``, and paced rather than rejected up to the hold budget
    (a share of the clients' patience), so that a burst waits at the gateway instead of in the
    service's queue, where the client's clock runs."""
    f = ctx.features
    cap = float(f["capacity_per_s"][row])
    if cap <= 0:
        return []
    floor = float(f["latency_floor_ms"][row])
    wait = float(f["observed_wait_ms"][row])
    patience = float(f["patience_ms"][row])
    target = max(float(ocfg.target_wait_min_ms), ocfg.target_wait_share * floor)
    # drain within half the clients' patience (the hold cap while no client timed out yet)
    horizon = max(float(ocfg.horizon_ms), 0.5 * patience if patience > 0 else ocfg.hold_max_ms)
    admit = float(laws.admission_rate(np.array([cap]), np.array([wait]), np.array([target]),
                                      horizon)[0])
    demand = float(f["attempt_rate_per_s"][row])
    excess = min(1.0, max(0.0, 1.0 - cap / demand)) if demand > 0 else 0.0
    prio = ctx.sums[row, PRIO0 : PRIO0 + N_PRIORITIES]
    p, share = priority_floor(prio, excess, 0)
    if share <= 0:
        return []
    per_s = demand / max(float(prio.sum()), 1.0)
    while p > 0 and float(prio[:p].sum()) * per_s > admit:
        p -= 1  # the priorities above would overrun what may be admitted: widen the class
    above = float(prio[:p].sum()) * per_s
    rate = round(max(0.0, admit - above), 3)
    answer = floor + target  # the answer time once the admitted rate holds the queue at target
    hold = ocfg.hold_share * patience - answer if patience > 0 else float(ocfg.hold_max_ms)
    hold_ms = int(min(max(hold, 0.0), float(ocfg.hold_max_ms)))
    action = _throttle(ctx, cfg, rate, key[1], max_delay_ms=hold_ms)
    evidence: dict[str, float | int | str] = {
        "law": "admit = capacity * (1 + (target_wait - wait) / horizon)",
        "admit_per_s": round(admit, 3),
        "demand_per_s": round(demand, 3),
        "target_wait_ms": round(target, 1),
        "horizon_ms": round(horizon),
        "above_per_s": round(above, 3),
        "max_delay_ms": hold_ms,
    }
    scope = Scope(endpoint=key[1], min_priority=p if p > 0 else None)
    return [Planned(f"admit-p{p}", scope, action, evidence)]


def saturation(
    ctx: EvalContext, cfg: ActionConfig, row: int, key: Key, age_ms: int
) -> list[Planned]:
    """Keep the endpoint's queue short by constraining its lowest priorities.

    The constrained class is priorities >= p (``priority_floor``: the fewest lowest priorities
    whose traffic covers the excess ``1 - 1/latency_ratio``, never a protected priority). It is
    deferred (hold + jitter, spreading what is admitted), and it may be admitted at

        allowed = max(0, served / latency_ratio - rate of the priorities above the class)

    ``served`` (successes + errors per second: attempts the service finished, not client
    timeouts) is the endpoint's capacity while a queue stands. Little's law: at that throughput the
    queue is ``latency_ratio`` times the normal in-flight work, so admitting ``1 / ratio`` of it
    drains the backlog instead of holding it, and the priorities above keep their latency.

    - Priorities above the class are served: the class is *throttled* to ``allowed`` (a rate, not
      a fraction: the windows count attempts at completion, so while a queue builds they cannot
      see how much is arriving, but a rate bounds what is admitted whatever arrives). The rate
      may fall to 0: the endpoint stays in use by the priorities above.
    - The class is the endpoint's whole traffic: no one is protected by starving it, and
      ``served`` collapses when every client times out, so it is *shed* by the fraction of its
      offered rate above ``allowed``, at most ``max_excess``.

    The policy applies a fall at once and relaxes gradually (``PolicyConfig.release_growth``).
    """
    sat = ctx.scored["saturation"].evidence
    ratio = float(sat["latency_ratio"][row])
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
    if age_ms < cfg.saturation_escalate_ms or (age_ms == 0 and score < cfg.saturation_shed_score):
        return out  # once constraining, the episode's hysteresis (not this gate) decides
    f = ctx.features
    per_s = float(f["attempt_rate_per_s"][row]) / max(float(f["attempts"][row]), 1.0)
    served = (float(f["successes"][row]) + float(f["errors"][row])) * per_s
    above = float(prio[:p].sum()) * per_s
    allowed = max(0.0, served / max(ratio, 1.0) - above)
    if above <= 0:
        # The class is the endpoint's whole traffic: there is no one to protect by starving it,
        # and ``served`` collapses when every client times out (a metastable failure), so a rate
        # would shut the endpoint off. Shed the excess over what it serves, at most max_excess.
        offered = float(prio[p:].sum()) * per_s
        fraction = 1.0 - allowed / offered if offered > 0 else 0.0
        fraction = round(min(max(fraction, 0.0), cfg.max_excess), 3)
        if fraction > 0:
            shed = Action("shed", fraction=fraction, retry_after_ms=cfg.saturation_retry_after_ms)
            out.append(Planned("shed", scope, shed))
        return out
    # Priorities above the class are served: the class gets what they leave (a rate, so that
    # arrivals the windows have not yet seen complete cannot overrun it).
    out.append(Planned("throttle", scope, _throttle(ctx, cfg, round(allowed, 3), key[1])))
    return out


def _throttle(
    ctx: EvalContext,
    cfg: ActionConfig,
    rate: float,
    endpoint: str,
    tenant: str | None = None,
    max_delay_ms: int = 0,
) -> Action:
    """A throttle at ``rate`` for the scope as a whole, apportioned by each gateway's share."""
    shares, default = _shares(ctx, endpoint, tenant)
    return Action(
        "throttle",
        rate_per_s=rate,
        burst=round(max(1.0, rate * cfg.burst_s), 3),
        shares=shares,
        default_share=default,
        max_delay_ms=max_delay_ms,
    )


def _shares(
    ctx: EvalContext, endpoint: str, tenant: str | None = None
) -> tuple[tuple[tuple[str, float], ...], float]:
    """Per-gateway shares of a rate: each gateway's observed share of the scope's attempts."""
    counts: dict[str, int] = {}
    tenants = (
        [tenant]
        if tenant is not None
        else [k[2] for k in ctx.keys if k[0] == KIND_PAIR and k[1] == endpoint]
    )
    for t in tenants:
        for g, n in ctx.gateway_counts(endpoint, t).items():
            counts[g] = counts.get(g, 0) + n
    total = sum(counts.values())
    shares = tuple(sorted((g, round(c / total, 4)) for g, c in counts.items())) if total else ()
    default = round(1.0 / (len(shares) + 1), 4) if shares else 1.0
    return shares, default


def contention(ctx: EvalContext, cfg: ActionConfig, row: int, key: Key) -> list[Planned]:
    endpoint, tenant = key[1], key[2]
    ep = int(ctx.endpoint_row[row])
    n = max(float(ctx.features["active_tenants"][row]), 1.0)
    capacity = float(ctx.features["completion_rate_per_s"][ep])
    rate = round(max(capacity / n, 1.0), 3)
    action = _throttle(ctx, cfg, rate, endpoint, tenant)
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
