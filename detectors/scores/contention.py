"""Cross-tenant contention: one tenant far above its fair share of a contended endpoint.

Runs on endpoint x tenant keys. Score = contended x over x grown, where

- ``contended`` = max(ramp(endpoint latency (fast window) / its baseline, lat_lo, lat_hi),
  ramp(endpoint error fraction, err_lo, err_hi)): the endpoint is near capacity;
- ``over`` = ramp((share - fair) / (1 - fair), over_lo, over_hi) with fair = 1 / active tenants:
  how far from a fair split towards a monopoly (0 with a single tenant);
- ``grown`` = ramp(share / the tenant's baseline share, grow_lo, grow_hi): the tenant took more
  than it normally has. Proportional (organic) growth keeps shares, so it never scores;
- a z-gate on the share against binomial noise over the endpoint's attempts (few events prove
  nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from detectors.features import ratio
from detectors.layout import F64
from detectors.scores.base import Detector, DetectorConfig, ramp


@dataclass(frozen=True, slots=True)
class ContentionConfig(DetectorConfig):
    lat_lo: float = 1.2
    lat_hi: float = 1.6
    err_lo: float = 0.05
    err_hi: float = 0.2
    over_lo: float = 0.2
    over_hi: float = 0.45
    grow_lo: float = 1.3
    grow_hi: float = 1.8
    share_floor: float = 0.02  # std floor of the share (absolute)


class Contention(Detector[ContentionConfig]):
    name = "contention"
    inputs = (
        "tenant_share",
        "active_tenants",
        "endpoint_latency_mean_ms",
        "endpoint_error_fraction",
        "endpoint_attempts",
    )
    baselines = ("share", "endpoint_log_latency")
    config_type = ContentionConfig

    def _score(self, x: Mapping[str, F64]) -> tuple[F64, dict[str, F64], dict[str, F64]]:
        c = self.config
        share = x["tenant_share"]
        n = x["active_tenants"]
        fair = ratio(np.ones_like(n), n, empty=1.0)
        over = ratio(share - fair, 1.0 - fair)
        log_lat = np.log(np.maximum(x["endpoint_latency_mean_ms"], 0.1))
        lat_ratio = np.exp(log_lat - self.state["endpoint_log_latency"].mean)
        contended = np.maximum(
            ramp(lat_ratio, c.lat_lo, c.lat_hi),
            ramp(x["endpoint_error_fraction"], c.err_lo, c.err_hi),
        )
        base_share = self.state["share"].mean
        growth = ratio(share, base_share, empty=1.0)
        # binomial noise of a share measured over n attempts: sqrt(p (1 - p) / n)
        noise = np.sqrt(
            ratio(base_share * (1.0 - base_share), x["endpoint_attempts"]) + c.share_floor**2
        )
        z = (share - base_share) / noise
        raw = (
            contended
            * ramp(over, c.over_lo, c.over_hi)
            * ramp(growth, c.grow_lo, c.grow_hi)
            * self._gate(z)
        )
        evidence = {
            "tenant_share": share,
            "fair_share": fair,
            "share_baseline": base_share,
            "share_z": z,
            "active_tenants": n,
            "endpoint_latency_ratio": lat_ratio,
            "endpoint_error_fraction": x["endpoint_error_fraction"],
        }
        return raw, evidence, {"share": share, "endpoint_log_latency": log_lat}
