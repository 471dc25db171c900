"""Governor configuration: validated, immutable, separate from running state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from detectors.capacity import CapacityConfig
from detectors.errors import ConfigError
from detectors.keybudget import KeyLimits
from detectors.policy import PolicyConfig
from detectors.scores import (
    RULES,
    ContentionConfig,
    FanoutConfig,
    OrganicConfig,
    OverloadConfig,
    RetryStormConfig,
)


@dataclass(frozen=True, slots=True)
class ActionConfig:
    """How detections become actions (each rule's ``plan`` in ``detectors/scores/``).

    - Retry storm: defer retries ``storm_hold_ms`` + U[0, ``storm_jitter_ms``] (jitter >= hold:
      spreads a wave over more than its own width, which breaks the phase), and shed retries beyond
      the budget ``laws.retry_budget(rho, budget_margin, retry_budget)`` retries per first
      attempt (at most ``retry_budget``, 0.2: Finagle's default; 0 once first attempts alone use
      ``1 - budget_margin`` of the capacity) with ``storm_retry_after_ms``.
    - Priorities below ``protected_priorities`` are never constrained by storm or fan-out
      directives (overload admission orders by priority instead: ``detectors/scores/overload.py``).
    - Contention: throttle to fair share of observed capacity, ``burst_s`` seconds of burst.
    - Fan-out: defer sub-requests ``fanout_hold_ms`` + U[0, ``fanout_jitter_ms``]; scoped to one
      endpoint when it carries >= ``localize_share`` of the tenant's sub-requests.
    """

    storm_hold_ms: int = 250
    storm_jitter_ms: int = 500
    storm_retry_after_ms: int = 1_000
    retry_budget: float = 0.2
    budget_margin: float = 0.1
    max_excess: float = 0.9
    protected_priorities: int = 2
    burst_s: float = 0.2
    fanout_hold_ms: int = 300
    fanout_jitter_ms: int = 300
    localize_share: float = 0.8

    def __post_init__(self) -> None:
        for name in (
            "storm_hold_ms",
            "storm_jitter_ms",
            "storm_retry_after_ms",
            "fanout_hold_ms",
            "fanout_jitter_ms",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"ActionConfig.{name} must be >= 0")
        for name in ("retry_budget", "budget_margin", "max_excess", "localize_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"ActionConfig.{name} must be in [0, 1]")
        if not 1 <= self.protected_priorities <= 9:
            raise ConfigError("ActionConfig.protected_priorities must be in 1..9")
        if not self.burst_s > 0:
            raise ConfigError("ActionConfig.burst_s must be > 0")


@dataclass(frozen=True, slots=True)
class GovernorConfig:
    """- ``bucket_ms``: evaluation step and time resolution (100 ms: 10 buckets resolve retry
      phase within the 1 s horizon).
    - ``horizons_ms``: ascending multiples of ``bucket_ms``; the first is the detection window,
      the second (if any) the trend reference, the last the memory (ring length, eviction).
    - ``allowed_lateness_ms``: watermark = max event time seen - this.
    - ``event_time``: ``"completion"`` (default) windows an attempt at ``ts_ms + latency_ms``, when
      its outcome exists; ``"start"`` at ``ts_ms``. Gateways emit after completion, so with
      ``"start"`` every attempt slower than the lateness would be late (and slow requests would
      vanish from the latency features exactly when latency rises).
    - ``feature_every_ms``: feature records are emitted when the boundary is a multiple of this.
    - ``latency_fast_ms``: the quick latency window (300 ms: three buckets, so a queue shows
      within a second; ``detectors/capacity.py`` measures the wait there when it holds enough
      successes).
    - ``organic_guard``: organic score at/above which storm/contention/fan-out may not enter.
    - ``disabled``: rules (``detectors.scores.RULES`` names) that score and record but do not
      act, e.g. ``["fanout"]`` while a new planner is rolled out.
    - ``keys``: the most endpoints, tenants and endpoint x tenant pairs tracked at once; new
      names beyond them fold into ``~other`` (``detectors.keybudget``): memory stays bounded
      whatever names clients send.
    """

    bucket_ms: int = 100
    horizons_ms: tuple[int, ...] = (1_000, 10_000, 60_000)
    allowed_lateness_ms: int = 200
    event_time: Literal["completion", "start"] = "completion"
    feature_every_ms: int = 1_000
    latency_fast_ms: int = 300
    organic_guard: float = 0.5
    disabled: tuple[str, ...] = ()
    keys: KeyLimits = field(default_factory=KeyLimits)
    retry_storm: RetryStormConfig = field(default_factory=RetryStormConfig)
    overload: OverloadConfig = field(default_factory=OverloadConfig)
    capacity: CapacityConfig = field(default_factory=CapacityConfig)
    contention: ContentionConfig = field(default_factory=ContentionConfig)
    fanout: FanoutConfig = field(default_factory=FanoutConfig)
    organic: OrganicConfig = field(default_factory=OrganicConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    actions: ActionConfig = field(default_factory=ActionConfig)

    def __post_init__(self) -> None:
        if self.bucket_ms <= 0:
            raise ConfigError(f"bucket_ms must be > 0, got {self.bucket_ms}")
        h = self.horizons_ms
        if not h or any(x <= 0 or x % self.bucket_ms for x in h):
            raise ConfigError(f"horizons_ms must be positive multiples of bucket_ms, got {h}")
        if list(h) != sorted(set(h)):
            raise ConfigError(f"horizons_ms must be strictly ascending, got {h}")
        if self.allowed_lateness_ms < 0:
            raise ConfigError("allowed_lateness_ms must be >= 0")
        if self.event_time not in ("completion", "start"):
            raise ConfigError(
                f"event_time must be 'completion' or 'start', got {self.event_time!r}"
            )
        if self.feature_every_ms <= 0 or self.feature_every_ms % self.bucket_ms:
            raise ConfigError("feature_every_ms must be a positive multiple of bucket_ms")
        if not 0 < self.latency_fast_ms <= h[-1] or self.latency_fast_ms % self.bucket_ms:
            raise ConfigError("latency_fast_ms must be a positive multiple of bucket_ms")
        if not 0 < self.organic_guard <= 1:
            raise ConfigError("organic_guard must be in (0, 1]")
        acting = {r.name for r in RULES if r.plan is not None}
        unknown = sorted(set(self.disabled) - acting)
        if unknown:
            raise ConfigError(f"disabled: unknown rules {unknown}, known: {sorted(acting)}")

    def buckets(self, ms: int) -> int:
        return ms // self.bucket_ms
