"""Decode errors are data: what was wrong and where, never an exception out of the codec."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DecodeError:
    """One kind of problem in one message.

    - ``reason``: what was wrong, e.g. ``"not JSON"``, ``"ts_ms: must be an integer"``.
    - ``where``: the part of the message: ``"message"`` or a column/field name.
    - ``rows``: up to the first 20 row indices affected (frames), empty for message-level errors.
    - ``count``: how many rows (or 1 for a message-level error) were rejected for this reason.
    """

    reason: str
    where: str = "message"
    rows: tuple[int, ...] = ()
    count: int = 1

    def describe(self) -> str:
        at = (
            f" rows {list(self.rows)}{'…' if self.count > len(self.rows) else ''}"
            if self.rows
            else ""
        )
        return f"{self.where}: {self.reason} ({self.count}{at})"
