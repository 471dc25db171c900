"""Errors of the functional core, under Flyball's one root (``flyball.errors.FlyballError``)."""

from __future__ import annotations

from flyball.errors import ConfigError as FlyballConfigError
from flyball.errors import FlyballError


class DetectorError(FlyballError):
    """Root of every error raised by ``detectors``."""


class ConfigError(DetectorError, FlyballConfigError, ValueError):
    """A configuration value is invalid; the message names the field."""


class WatermarkError(DetectorError, ValueError):
    """Window stores that cannot be combined (different closed watermarks)."""
