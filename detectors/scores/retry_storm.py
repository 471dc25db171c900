"""Synchronized retry storm: attempts per intent rising above the learned normal, in phase, while
the service fails the attempts it is given.

Score = ramp(amplification / baseline, 1 + rise_lo, 1 + rise_hi) x z-gate x evidence-gate
x (1 - coherence_weight + coherence_weight x retry_coherence) x failing.

- Amplification (attempts per first attempt, as offered at the gateways) is the ratio of attempts
  growth to intents growth, so organic growth (more intents, same ratio) leaves it flat.
- ``failing`` = ramp(failed share of the attempts that *reached the service* (errors + timeouts
  over attempts that ran; gateway refusals are neither) above its learned normal, fail_lo,
  fail_hi). Clients retry because attempts fail: a storm is retries driven by failures of the
  service. A governor's own refusals also make clients retry, and that echo keeps amplification
  up for as long as the governor refuses; the failure signal does not echo. Once the service
  answers what it admits, the score decays and the episode releases (hysteresis exit), however
  much the clients still retry. The failure baseline learns only while the failed share is
  normal (its own protection: amplification may be flat while the service fails, e.g. when a
  shed keeps retries down, and that failure must not become the new normal).
- Coherence lowers the bar for in-phase retries (the metastable kind) without being required:
  with the default weight 0.4, incoherent retries need a doubling of attempts per intent to reach
  0.6, in-phase ones ~1.5x.

**Cold start.** The baselines lean on physical priors, weighted by ``w = learned / warmup``:
amplification ``w x learned + (1 - w) x 1`` (no retries), failed share ``w x learned`` (none
fail). So a storm that is under way when the governor starts (or before it has learned
anything) scores at once; the rule's precondition (``overload`` on the endpoint) keeps the
priors from acting where the service keeps pace.

Amplification's denominator is the first attempts of the detection window or, if higher, of the
mid window at its rate, so it stays finite when arrivals stop and the last retries drain
(``detectors.evaluate.detector_inputs``).

**Action** (``plan``): the retry budget is sized from the service's utilization by first
attempts alone (``laws.retry_budget``: ``rho (1 + r) < 1 - margin``, at most ``retry_budget``):
retries beyond it are shed, the rest deferred with jitter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from detectors import laws
from detectors.actions import EvalContext
from detectors.baseline import Ewma, alpha_for_half_life
from detectors.layout import F64, KIND_ENDPOINT, N_PRIORITIES, PRIO0
from detectors.policy import Planned
from detectors.rule import Rule
from detectors.scores.base import Detector, DetectorConfig, ramp
from detectors.windows import Key
from schemas.directive import Action, Scope

if TYPE_CHECKING:
    from detectors.config import GovernorConfig


@dataclass(frozen=True, slots=True)
class RetryStormConfig(DetectorConfig):
    rise_lo: float = 0.15  # amplification 15 % above normal starts to count
    rise_hi: float = 0.6  # ... and 60 % above counts fully
    coherence_weight: float = 0.4
    min_retries: float = 8.0  # retries in the window before any score (evidence gate)
    amp_floor: float = 0.05  # std floor of amplification (absolute)
    fail_lo: float = 0.05  # failed share of admitted attempts above normal that starts to count
    fail_hi: float = 0.2  # ... and counts fully


class RetryStorm(Detector[RetryStormConfig]):
    name = "retry_storm"
    inputs = ("amplification", "retry_coherence", "retries", "error_fraction", "rejected")
    baselines = ("amplification",)
    config_type = RetryStormConfig
    needs_warmup = False
    blends_priors = True  # physical priors until learned (module docstring)

    def __init__(self, config: RetryStormConfig | None = None) -> None:
        super().__init__(config)
        # learned with its own protection in ``_score`` (not in ``baselines``)
        self.state["error_fraction"] = Ewma(alpha_for_half_life(self.config.half_life_evals))

    def _may_learn(self, x: Mapping[str, F64], k: int) -> np.ndarray | None:
        """Neither baseline learns while a queue stands at the endpoint (optional feature
        ``queued``, ``detectors.capacity``): retries and failures of an overloaded service are
        not its normal, even when the storm score is low (while a shed keeps retries down)."""
        queued = x.get("queued")
        if queued is None:
            return None
        calm: np.ndarray = queued[:k] <= 0
        return calm

    def _score(self, x: Mapping[str, F64]) -> tuple[F64, dict[str, F64], dict[str, F64]]:
        c = self.config
        amp = x["amplification"]
        k = amp.shape[0]
        learned = self.state["amplification"]
        w = np.minimum(learned.n[:k] / c.warmup, 1.0) if c.warmup > 0 else np.ones(k)
        base = np.maximum(w * learned.mean + (1.0 - w), 1.0)
        growth = amp / base
        z = (amp - base) / np.sqrt(w * learned.var + c.amp_floor**2)
        coherence = x["retry_coherence"]
        evidence_gate = ramp(x["retries"], c.min_retries / 2.0, c.min_retries)
        phase = 1.0 - c.coherence_weight + c.coherence_weight * coherence
        err = x["error_fraction"]
        err_base = self.state["error_fraction"]
        excess_err = err - w * err_base.mean
        failing = ramp(excess_err, c.fail_lo, c.fail_hi)
        ran = (x["attempts"] - x["rejected"] > 0) & (x["mature"] > 0)
        calm = self._may_learn(x, k)
        if calm is not None:
            ran &= calm
        err_base.update(err, ran & ((err_base.n < c.warmup) | (excess_err < c.fail_lo)))
        raw = (
            ramp(growth, 1.0 + c.rise_lo, 1.0 + c.rise_hi)
            * self._gate(z)
            * evidence_gate
            * phase
            * failing
        )
        evidence = {
            "amplification": amp,
            "amplification_baseline": base,
            "amplification_z": z,
            "retry_coherence": coherence,
            "retries": x["retries"],
            "rejected": x["rejected"],
            "error_fraction": err,
            "error_fraction_baseline": w * err_base.mean,
            "history_weight": w,
        }
        return raw, evidence, {"amplification": amp}


def plan(
    ctx: EvalContext, config: GovernorConfig, row: int, key: Key, age_ms: int
) -> list[Planned]:
    """Defer retries (hold + jitter breaks the phase) and shed those beyond the budget: ``defer``
    {E, min_attempt=1, min_priority=protected}; ``shed`` (same scope) of the retries beyond
    ``r = laws.retry_budget(rho)`` per first attempt (``fraction`` = excess retries / retries),
    ``rho`` the endpoint's first attempts over its measured capacity."""
    cfg = config.actions
    prio = ctx.sums[row, PRIO0 : PRIO0 + N_PRIORITIES]
    if not prio[cfg.protected_priorities :].any():
        return []  # only protected priorities here: nothing this governor may hold or shed
    f = ctx.features
    scope = Scope(endpoint=key[1], min_attempt=1, min_priority=cfg.protected_priorities)
    out = [
        Planned(
            "defer",
            scope,
            Action("defer", hold_ms=cfg.storm_hold_ms, jitter_ms=cfg.storm_jitter_ms),
        )
    ]
    rho = float(f["utilization"][row])
    if float(f["capacity_per_s"][row]) <= 0:
        rho = 1.0  # capacity unknown: no retry is known to fit
    r = float(laws.retry_budget(np.array([rho]), cfg.budget_margin, cfg.retry_budget)[0])
    retries = float(f["retries"][row])
    first = float(f["first_attempts"][row])
    budget = r * first
    if retries > budget and retries > 0:
        fraction = round((retries - budget) / retries, 3)
        evidence: dict[str, float | int | str] = {
            "law": "rho * (1 + r) <= 1 - margin",
            "utilization": round(rho, 4),
            "retry_budget": round(r, 4),
            "retries_per_first": round(retries / first, 4) if first > 0 else retries,
        }
        out.append(
            Planned(
                "shed",
                scope,
                Action("shed", fraction=fraction, retry_after_ms=cfg.storm_retry_after_ms),
                evidence,
            )
        )
    return out


# Retries are waste only where they overrun the service: a storm enters where the service is
# overloaded (work for nobody, or about to be), never on failures a service with headroom
# answers, such as an error blip its clients retry politely
RULE = Rule(
    RetryStorm, "retry_storm", KIND_ENDPOINT, plan, guarded=True, requires=("overload",)
)
