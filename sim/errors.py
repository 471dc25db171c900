"""Errors of the simulator, under Flyball's root exception."""

from __future__ import annotations

from flyball.errors import ConfigError, FlyballError


class SimError(FlyballError):
    """The simulator could not run as asked."""


class ScenarioError(ConfigError):
    """A scenario file is missing, unreadable or invalid; the message names the bad key."""


class UnknownPolicyError(SimError):
    """The policy name is not one of the registered gateway policies."""
