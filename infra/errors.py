"""Errors of the infrastructure shell."""

from __future__ import annotations

from flyball.errors import FlyballError


class InfraError(FlyballError):
    """The embedded stack or a backing service could not be started or reached."""


class HistoryError(FlyballError):
    """The history store rejected a statement or could not be reached.

    ``retriable`` (the default) means the store may take the same statement later: it was
    unreachable, overloaded, or failed for a reason that is not the rows'. ``retriable=False``
    means the store refused *these rows* (a value its column cannot hold, a block spanning too
    many partitions): retrying the same rows fails again, so a sink splits the batch to find
    them (``infra.isolate``) and dead-letters only those.
    """

    retriable = True

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable
