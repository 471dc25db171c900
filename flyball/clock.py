"""The wall clock, for the shells only (the core never reads a clock: time is injected)."""

from __future__ import annotations

import time


def wall_ms() -> int:
    """Epoch milliseconds, exact integer (the clock of ``ts_ms`` and directives' ``expires_ms``)."""
    return time.time_ns() // 1_000_000
