"""Errors of the infrastructure shell."""

from __future__ import annotations

from flyball.errors import FlyballError


class InfraError(FlyballError):
    """The embedded stack or a backing service could not be started or reached."""


class HistoryError(FlyballError):
    """The history store rejected a statement or could not be reached."""

    retriable = True
