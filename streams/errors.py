"""Errors of the stream worker shell; each says whether retrying could help."""

from __future__ import annotations

from flyball.errors import FlyballError


class StreamsError(FlyballError):
    """Base of the stream worker's errors."""


class WarmupError(StreamsError):
    """Window state for a newly assigned partition could not be rebuilt from the log."""

    retriable = True
