"""Every number a record may carry, and its accepted range: one definition for all readers.

The event decoder (``schemas.frames``), the control decoder (``schemas.control``) and the history
tables (``infra/ddl.sql``) read these bounds; ``tests/schemas/test_bounds.py`` checks that every
bound fits the column type the DDL gives the field, so a value a decoder accepts is one the
history store can hold (a value it would refuse is rejected at decoding, with its reason, instead
of stalling the inserts behind it). Ranges are inclusive: ``(low, high)``.
"""

from __future__ import annotations

from typing import Final

from schemas.columns import APPLIED_CODES, STATUS_CODES

# Epoch milliseconds from 1970-01-01 (exclusive) to 2100-01-01: within DateTime64(3)'s range.
TS_MS: Final = (1, 4_102_444_800_000)
PRIORITY: Final = (0, 9)
ATTEMPT: Final = (0, 10_000)
DEPTH: Final = (0, 1_000)
# A gateway hold, jitter, pacing delay or retry-after: at most an hour (UInt32 ms in history).
DELAY_MS: Final = (0, 3_600_000)
# A directive's lifetime (expires_ms - issued_ms): at most an hour; the governor's is seconds and
# refreshes extend it, so a forged or stale directive cannot bind for longer than this.
TTL_MS: Final = (0, 3_600_000)
# Rates and bursts are finite and below this (Float64 in history; a rate above it is no limit).
MAX_RATE: Final = 1e9

EVENT_RANGES: Final[dict[str, tuple[int, int]]] = {
    "ts_ms": TS_MS,
    "latency_ms": (0, 86_400_000),
    "status": (0, len(STATUS_CODES) - 1),
    "attempt": ATTEMPT,
    "depth": DEPTH,
    "priority": PRIORITY,
    "tokens_in": (0, 2**40),
    "tokens_out": (0, 2**40),
    "applied": (0, len(APPLIED_CODES) - 1),
}

DIRECTIVE_RANGES: Final[dict[str, tuple[int, int]]] = {
    "issued_ms": TS_MS,
    "expires_ms": TS_MS,
    "scope.min_priority": PRIORITY,
    "scope.min_attempt": ATTEMPT,
    "scope.min_depth": DEPTH,
    "action.max_delay_ms": DELAY_MS,
    "action.hold_ms": DELAY_MS,
    "action.jitter_ms": DELAY_MS,
    "action.retry_after_ms": DELAY_MS,
    "action.max_inflight": (0, 1_000_000),
}


def out_of_range(value: int, bounds: tuple[int, int]) -> str | None:
    """The reason a value is outside ``bounds``, or None."""
    lo, hi = bounds
    return None if lo <= value <= hi else f"out of range [{lo}, {hi}]"
