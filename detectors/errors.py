"""Errors of the functional core, under one root."""

from __future__ import annotations


class DetectorError(Exception):
    """Root of every error raised by ``detectors``."""


class ConfigError(DetectorError, ValueError):
    """A configuration value is invalid; the message names the field."""


class SnapshotError(DetectorError, ValueError):
    """A snapshot cannot be restored (wrong format or version)."""


class WatermarkError(DetectorError, ValueError):
    """Window stores that cannot be combined (different closed watermarks)."""
