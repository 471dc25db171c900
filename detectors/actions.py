"""What builders of directives share: the evaluation context and the shapes of actions.

Each decision rule turns its detection into actions in its own file (``detectors/scores/*.py``,
``plan``; the registry is ``detectors.scores.RULES``). Actions are scoped to the evidence, never
broader. Shared here:

- ``EvalContext``: what a rule's ``plan`` may read at one evaluation;
- ``priority_floor``: the constrained class, priorities >= p, chosen from the key's observed
  priority mix (short horizon): the largest ``p`` whose traffic at priorities >= p covers the
  excess load, never below a given floor;
- ``throttle``: a rate for a scope as a whole, apportioned per gateway by its observed share of
  the scope's attempts (mid horizon);
- ``target_wait_ms`` / ``hold_ms``: the standing queue a paced throttle keeps, and how long a
  paced request may wait at a gateway (the contention rule's pacing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from detectors.features import Features
from detectors.layout import I64, KIND_PAIR, N_PRIORITIES
from detectors.windows import Key
from schemas.directive import Action

if TYPE_CHECKING:  # the rules import this module; these import the rules
    from detectors.config import ActionConfig
    from detectors.scores.base import Scored
    from detectors.scores.overload import OverloadConfig


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


def throttle(
    ctx: EvalContext,
    cfg: ActionConfig,
    rate: float,
    endpoint: str,
    tenant: str | None = None,
    max_delay_ms: int = 0,
) -> Action:
    """A throttle at ``rate`` for the scope as a whole, apportioned by each gateway's share."""
    shares, default = gateway_shares(ctx, endpoint, tenant)
    return Action(
        "throttle",
        rate_per_s=rate,
        burst=round(max(1.0, rate * cfg.burst_s), 3),
        shares=shares,
        default_share=default,
        max_delay_ms=max_delay_ms,
    )


def gateway_shares(
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


def target_wait_ms(floor_ms: float, config: OverloadConfig) -> float:
    """The standing queue a paced throttle keeps: enough that no slot idles and the service stays
    measurably busy (``queued``), so its capacity keeps being measured while it is throttled."""
    return max(float(config.target_wait_min_ms), config.target_wait_share * floor_ms)


def hold_ms(f: Features, ep: int, config: OverloadConfig) -> int:
    """How long a paced request may wait at a gateway for endpoint row ``ep``: ``hold_share`` of
    the clients' patience minus the answer time once the queue is held at the target wait
    (``hold_max_ms`` while patience is unknown): a held request whose client gave up is never
    sent."""
    floor = float(f["latency_floor_ms"][ep])
    wait = float(f["observed_wait_ms"][ep])
    patience = float(f["patience_ms"][ep])
    service = max(float(f["ok_p50_ms"][ep]) - wait, floor)  # the answer time without the wait
    answer = service + target_wait_ms(floor, config)
    hold = config.hold_share * patience - answer if patience > 0 else float(config.hold_max_ms)
    return int(min(max(hold, 0.0), float(config.hold_max_ms)))
