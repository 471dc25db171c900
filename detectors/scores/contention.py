"""Cross-tenant contention: one tenant far above its fair share of a busy endpoint.

Runs on endpoint x tenant keys. Score = contended x over x grown, where

- ``contended`` = ramp(the endpoint's queue wait / its no-load latency, busy_lo, busy_hi) while
  a queue stands there (``detectors.capacity``: ``queued``, ``observed_wait_ms``,
  ``latency_floor_ms`` of the pair's endpoint row): the endpoint has no headroom, so one tenant's
  excess is everyone's wait. Physical, no learned normal: a tenant that takes most of an endpoint
  that keeps pace harms no one, and is left alone;
- ``over`` = ramp((share - fair) / (1 - fair), over_lo, over_hi) with fair = 1 / active tenants:
  how far from a fair split towards a monopoly (0 with a single tenant);
- ``grown`` = ramp(share / the tenant's baseline share, grow_lo, grow_hi): the tenant took more
  than it normally has. Proportional (organic) growth keeps shares, so it never scores;
- a z-gate on the share against binomial noise over the endpoint's attempts (few events prove
  nothing).

**Newcomers.** A tenant new to an endpoint has no history there, but the endpoint has. With the
optional feature ``endpoint_row`` (each key's endpoint row; own row for other keys) a pair row
scores as soon as its endpoint is ready (learned ``warmup`` samples, window covered), from its
first event; it learns once its own window is covered, and then only while it scores low, like
any ready key. Its baselines lean on priors, weighted by ``w = learned / warmup`` (1 once the
pair has learned ``warmup`` samples: established pairs score exactly as before):

- share baseline ``w x own + (1 - w) x 0``: a tenant that was not on the endpoint had share 0,
  so taking most of it *is* growth (from nothing to something is full growth);
- the z-gate's null share ``w x own + (1 - w) x fair``: what a newcomer must prove against
  binomial noise is that it takes more than a fair share (an ordinary arrival takes about that).

Endpoint rows score the worst of their pairs (not acted on: contention acts on pairs). A
newcomer does not learn while directives reject some of its attempts (optional feature
``rejected``): throttled, a flood looks calm, and ``warmup`` calm samples would establish it as
its normal share. Without ``endpoint_row`` every key is its own endpoint (key-local, as for any
detector).

The action (``plan``) is max-min fair: the tenant may have what the others leave of the
endpoint's capacity, at least a fair share, paced at the gateways within the clients' patience
(the excess waits there, not in the endpoint's queue ahead of the other tenants).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from detectors.actions import EvalContext, hold_ms, throttle
from detectors.features import ratio
from detectors.layout import F64, KIND_PAIR
from detectors.policy import Planned
from detectors.rule import Rule
from detectors.scores.base import Detector, DetectorConfig, ramp
from detectors.windows import Key
from schemas.directive import Scope

if TYPE_CHECKING:
    from detectors.config import GovernorConfig


@dataclass(frozen=True, slots=True)
class ContentionConfig(DetectorConfig):
    busy_lo: float = 0.5
    busy_hi: float = 1.0
    over_lo: float = 0.2
    over_hi: float = 0.45
    grow_lo: float = 1.3
    grow_hi: float = 1.8
    share_floor: float = 0.02  # std floor of the share (absolute)


def endpoint_rows(x: Mapping[str, F64], k: int) -> np.ndarray:
    """Each key's endpoint row (``endpoint_row`` feature), or its own row without it."""
    rows = x.get("endpoint_row")
    if rows is None:
        return np.arange(k)
    return rows.astype(np.intp)


class Contention(Detector[ContentionConfig]):
    name = "contention"
    inputs = (
        "tenant_share",
        "active_tenants",
        "endpoint_attempts",
        "queued",
        "observed_wait_ms",
        "latency_floor_ms",
    )
    baselines = ("share",)
    config_type = ContentionConfig

    def _ready(self, x: Mapping[str, F64], k: int, active: np.ndarray) -> np.ndarray:
        """A key with traffic scores when it or its endpoint has learned ``warmup`` samples and
        its endpoint's window is covered: a new pair's own window is not (its first second),
        but the tenant's share of the endpoint over it is exact (it had none before)."""
        ep = endpoint_rows(x, k)
        n = self.learned[:k]
        covered = (x["attempts"] > 0) & (x["mature"][ep] > 0)
        ready: np.ndarray = covered & (np.maximum(n, n[ep]) >= self.config.warmup)
        return ready

    def _may_learn(self, x: Mapping[str, F64], k: int) -> np.ndarray | None:
        """A newcomer pair does not learn while directives reject some of its attempts: the calm
        that throttling it buys says nothing of its normal share, and a newcomer's first samples
        *become* its baseline (an established one moves at the EWMA pace: left as it was)."""
        rejected = x.get("rejected")
        if rejected is None:
            return None
        ep = endpoint_rows(x, k)
        newcomer = (ep != np.arange(k)) & (self.learned[:k] < self.config.warmup)
        may: np.ndarray = ~(newcomer & (rejected > 0))
        return may

    def _score(self, x: Mapping[str, F64]) -> tuple[F64, dict[str, F64], dict[str, F64]]:
        c = self.config
        share = x["tenant_share"]
        n = x["active_tenants"]
        k = share.shape[0]
        ep = endpoint_rows(x, k)
        is_pair = ep != np.arange(k)
        # weight of the pair's own history (1: established; non-pair rows always 1)
        learned = self.learned[:k].astype(np.float64)
        w = np.minimum(learned / c.warmup, 1.0) if c.warmup > 0 else np.ones(k)
        w = np.where(is_pair, w, 1.0)
        prior = 1.0 - w
        fair = ratio(np.ones_like(n), n, empty=1.0)
        over = ratio(share - fair, 1.0 - fair)
        # the endpoint's queue (measured on endpoint rows only: a pair reads its endpoint's)
        busy = ratio(x["observed_wait_ms"][ep], x["latency_floor_ms"][ep])
        contended = x["queued"][ep] * ramp(busy, c.busy_lo, c.busy_hi)
        own_share = self.state["share"].mean
        base_share = w * own_share  # + prior x 0: a newcomer had none of the endpoint
        grown = ramp(ratio(share, base_share, empty=1.0), c.grow_lo, c.grow_hi)
        grown[(base_share <= 0.0) & (share > 0.0)] = 1.0
        null = w * own_share + prior * fair
        # binomial noise of a share measured over n attempts: sqrt(p (1 - p) / n)
        noise = np.sqrt(ratio(null * (1.0 - null), x["endpoint_attempts"]) + c.share_floor**2)
        z = (share - null) / noise
        raw = contended * ramp(over, c.over_lo, c.over_hi) * grown * self._gate(z)
        pairs = np.flatnonzero(is_pair)
        if pairs.size:  # an endpoint row scores its worst pair (protects its baselines)
            worst = np.zeros(k)
            np.maximum.at(worst, ep[pairs], raw[pairs])
            raw = np.where(is_pair, raw, np.maximum(raw, worst))
        evidence = {
            "tenant_share": share,
            "fair_share": fair,
            "share_baseline": base_share,
            "share_z": z,
            "active_tenants": n,
            "endpoint_wait_ratio": busy,
            "history_weight": w,
        }
        return raw, evidence, {"share": share}


def plan(
    ctx: EvalContext, config: GovernorConfig, row: int, key: Key, age_ms: int
) -> list[Planned]:
    """``throttle`` {E, T} to what the other tenants leave of E's capacity, at least a fair
    share (max-min fairness), ``shares`` per gateway, paced within the clients' patience."""
    cfg = config.actions
    endpoint, tenant = key[1], key[2]
    f = ctx.features
    ep = int(ctx.endpoint_row[row])
    n = max(float(f["active_tenants"][row]), 1.0)
    capacity = float(f["capacity_per_s"][ep])
    if capacity <= 0:
        return []
    others = max(float(f["attempt_rate_per_s"][ep]) - float(f["attempt_rate_per_s"][row]), 0.0)
    rate = round(max(capacity / n, capacity - others, 1.0), 3)
    hold = hold_ms(f, ep, config.overload)
    action = throttle(ctx, cfg, rate, endpoint, tenant, max_delay_ms=hold)
    evidence: dict[str, float | int | str] = {
        "law": "rate = max(capacity / tenants, capacity - others' demand)",
        "capacity_per_s": round(capacity, 3),
        "others_per_s": round(others, 3),
        "max_delay_ms": hold,
    }
    return [Planned("throttle", Scope(endpoint=endpoint, tenant=tenant), action, evidence)]


RULE = Rule(Contention, "contention", KIND_PAIR, plan, guarded=True)
