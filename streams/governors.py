"""One Governor per assigned events partition, and the shell's clock decisions about it.

Events are keyed by endpoint, so partitions hold disjoint keys and each partition's governor sees
everything it needs. The core never reads a clock; the shell decides two things here:

- **event time first**: after each batch the governor advances to its own event-time watermark
  (``advance()`` with no argument).
- **idleness**: when a partition got no input for ``idle_after_ms`` of wall time while its traffic
  is live (newest event time within ``live_skew_ms`` of the wall clock), the shell advances its
  watermark to ``now_ms - lateness_ms`` so windows close and episodes release although no event
  moves event time. Replays of old data (event time far from the wall clock) are never advanced
  by the wall clock, so they stay deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from schemas.columns import EventColumns


class GovernorLike(Protocol):
    """The part of ``detectors.governor.Governor`` the shell uses."""

    def ingest(self, events: EventColumns) -> Any: ...
    def advance(self, watermark_ms: int | None = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class Timing:
    """Shell timing derived from the governor's configuration."""

    lateness_ms: int  # the core's allowed lateness: idle watermark = now - lateness
    warmup_ms: int  # how much log to replay on assignment (longest short horizon + slack)


def timing_from_config(config: Any, slack_ms: int = 5_000) -> Timing:
    """Read lateness and the longest window horizon from a ``GovernorConfig``."""
    lateness = int(getattr(config, "allowed_lateness_ms", 0) or 0)
    horizons = [int(h) for h in _horizons(config)] or [60_000]
    return Timing(lateness_ms=lateness, warmup_ms=max(horizons) + lateness + slack_ms)


def _horizons(config: Any) -> list[int]:
    out: list[int] = []
    for name in dir(config):
        if name.startswith("_"):
            continue
        value = getattr(config, name, None)
        if "horizon" in name and name.endswith("_ms"):
            if isinstance(value, int):
                out.append(value)
            elif isinstance(value, tuple | list):
                out.extend(v for v in value if isinstance(v, int))
    return out


class PartitionGovernor:
    """A partition's governor and what the shell tracks about its input."""

    __slots__ = ("governor", "idle_watermark_ms", "last_input_mono_ms", "max_ts_ms", "partition")

    def __init__(self, partition: int, governor: GovernorLike) -> None:
        self.partition = partition
        self.governor = governor
        self.max_ts_ms = 0
        self.last_input_mono_ms = 0.0
        self.idle_watermark_ms = 0

    def ingest(self, events: EventColumns, mono_ms: float) -> Any:
        if len(events):
            self.max_ts_ms = max(self.max_ts_ms, int(events.ts_ms.max()))
        self.last_input_mono_ms = mono_ms
        self.governor.ingest(events)
        return self.governor.advance()

    def idle_watermark(
        self, now_ms: int, mono_ms: float, timing: Timing, idle_after_ms: int, live_skew_ms: int
    ) -> int | None:
        """The wall-clock watermark to advance to, or None (busy, not live, or no progress)."""
        if self.max_ts_ms == 0 or mono_ms - self.last_input_mono_ms < idle_after_ms:
            return None
        if abs(now_ms - self.max_ts_ms) > live_skew_ms:
            return None
        wm = now_ms - timing.lateness_ms
        if wm <= max(self.idle_watermark_ms, self.max_ts_ms - timing.lateness_ms):
            return None
        self.idle_watermark_ms = wm
        return wm


class GovernorSet:
    """Partition -> PartitionGovernor; new governors come from ``factory``."""

    def __init__(self, factory: Callable[[], GovernorLike]) -> None:
        self.factory = factory
        self._by_partition: dict[int, PartitionGovernor] = {}

    def get(self, partition: int) -> PartitionGovernor | None:
        return self._by_partition.get(partition)

    def new(self, partition: int) -> PartitionGovernor:
        return PartitionGovernor(partition, self.factory())

    def put(self, pg: PartitionGovernor) -> None:
        self._by_partition[pg.partition] = pg

    def keep_only(self, partitions: set[int]) -> list[int]:
        dropped = [p for p in self._by_partition if p not in partitions]
        for p in dropped:
            del self._by_partition[p]
        return dropped

    def __iter__(self) -> Iterator[PartitionGovernor]:
        return iter(list(self._by_partition.values()))

    def __len__(self) -> int:
        return len(self._by_partition)
