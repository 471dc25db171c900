"""Detectors: each turns feature arrays (one value per key) into scores in [0, 1]."""

from typing import Any

from detectors.scores.base import Detector, DetectorConfig, Scored
from detectors.scores.contention import Contention, ContentionConfig
from detectors.scores.fanout import Fanout, FanoutConfig
from detectors.scores.organic import OrganicConfig, OrganicGrowth
from detectors.scores.overload import Overload, OverloadConfig
from detectors.scores.retry_storm import RetryStorm, RetryStormConfig
from detectors.scores.saturation import Saturation, SaturationConfig

ALL_DETECTORS: tuple[type[Detector[Any]], ...] = (
    RetryStorm,
    Overload,
    Saturation,
    Contention,
    Fanout,
    OrganicGrowth,
)

__all__ = [
    "ALL_DETECTORS",
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
    "Saturation",
    "SaturationConfig",
    "Scored",
]
