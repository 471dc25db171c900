"""Decision rules: each file holds one detector (feature arrays, one value per key, in; scores in
[0, 1] out), its config, and its ``plan`` (detection -> actions), declared as ``RULE``.

``RULES`` is the registry the governor iterates, in this order (the order directives of one
evaluation are issued in).
"""

from typing import Any

from detectors.rule import Rule
from detectors.scores import contention, fanout, organic, overload, retry_storm
from detectors.scores.base import Detector, DetectorConfig, Scored
from detectors.scores.contention import Contention, ContentionConfig
from detectors.scores.fanout import Fanout, FanoutConfig
from detectors.scores.organic import OrganicConfig, OrganicGrowth
from detectors.scores.overload import Overload, OverloadConfig
from detectors.scores.retry_storm import RetryStorm, RetryStormConfig

RULES: tuple[Rule, ...] = (
    retry_storm.RULE,
    overload.RULE,
    contention.RULE,
    fanout.RULE,
    organic.RULE,
)
ALL_DETECTORS: tuple[type[Detector[Any]], ...] = tuple(r.detector for r in RULES)

__all__ = [
    "ALL_DETECTORS",
    "RULES",
    "Contention",
    "ContentionConfig",
    "Detector",
    "DetectorConfig",
    "Fanout",
    "FanoutConfig",
    "OrganicConfig",
    "OrganicGrowth",
    "Overload",
    "OverloadConfig",
    "RetryStorm",
    "RetryStormConfig",
    "Rule",
    "Scored",
]
