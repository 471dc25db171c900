"""The root of Flyball's exceptions. Each says whether retrying could help (``retriable``)."""

from __future__ import annotations


class FlyballError(Exception):
    """Base of every error Flyball raises on purpose."""

    retriable: bool = False


class ConfigError(FlyballError):
    """A setting is missing or invalid; the message names the key."""
