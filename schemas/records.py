"""Window feature and detector score records (what workers publish and history keeps)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

RECORD_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class FeatureRecord:
    """Features of one key over one horizon ending at ``ts_ms`` (event time).

    ``tenant`` is "" for endpoint-level features. ``values`` maps feature name -> value
    (see ``detectors/features.py`` for the names and their meaning).
    """

    ts_ms: int
    horizon_ms: int
    endpoint: str
    tenant: str
    values: dict[str, float] = field(default_factory=dict)
    v: int = RECORD_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "kind": "features",
            "ts_ms": self.ts_ms,
            "horizon_ms": self.horizon_ms,
            "endpoint": self.endpoint,
            "tenant": self.tenant,
            "values": dict(self.values),
        }


@dataclass(frozen=True, slots=True)
class ScoreRecord:
    """One detector's score in [0, 1] for one key at ``ts_ms`` (event time), with evidence."""

    ts_ms: int
    detector: str
    endpoint: str
    tenant: str
    score: float
    evidence: dict[str, float | int | str] = field(default_factory=dict)
    v: int = RECORD_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "kind": "score",
            "ts_ms": self.ts_ms,
            "detector": self.detector,
            "endpoint": self.endpoint,
            "tenant": self.tenant,
            "score": self.score,
            "evidence": dict(self.evidence),
        }
