"""The worker's one Governor over its assigned partitions, and the shell's clock decisions.

Each assigned events partition is one *source* of the governor (``detectors.governor``): the core's
watermark is the minimum over active sources, so a partition that lags does not see its events
turned late by another's progress, and the per-bucket work (features, scores, policy) runs once
per worker instead of once per partition. The core never reads a clock; the shell decides:

- **which offsets are new**: a partition's ``next_offset`` is the first offset not yet ingested
  (warm-up replays up to it); a live message below it is already in the governor and is skipped,
  so a message delivered twice (redelivery after a rebalance) is never counted twice;
- **idleness**: a partition that got no input for ``idle_after_ms`` of wall time *and* has nothing
  left to read (the consumer's high watermark is not beyond ``next_offset``: a partition that is
  behind is lagging, not idle) is marked idle: excluded from the watermark until its next event;
- **the wall clock**: when every partition is idle and the traffic is live (newest event time
  within ``live_skew_ms`` of the wall clock), the watermark moves to ``now_ms - lateness_ms`` so
  windows close and episodes release although no event moves event time. Replays of old data
  (event time far from the wall clock) are never advanced by the wall clock, so they stay
  deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from schemas.columns import EventColumns


class GovernorLike(Protocol):
    """The part of ``detectors.governor.Governor`` the shell uses."""

    def ingest(self, events: EventColumns, source: int = 0) -> Any: ...
    def advance(self, watermark_ms: int | None = None) -> Any: ...
    def expect(self, source: int) -> None: ...
    def set_idle(self, source: int, idle: bool = True) -> None: ...


@dataclass(frozen=True, slots=True)
class Timing:
    """Shell timing derived from the governor's configuration."""

    lateness_ms: int  # the core's allowed lateness: wall-clock watermark = now - lateness
    warmup_ms: int  # how much log to replay on assignment (longest horizon + slack)


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


@dataclass(slots=True)
class PartitionState:
    next_offset: int  # first offset not yet ingested
    last_input_mono_ms: float  # wall (monotonic) time of its last input, or of going live
    idle: bool = False


HighWater = Callable[[int], int | None]  # partition -> the consumer's high watermark, if known


class WorkerGovernor:
    """One governor, one source per assigned partition, built for a set of partitions."""

    def __init__(
        self, governor: GovernorLike, next_offsets: dict[int, int], mono_ms: float
    ) -> None:
        """``next_offsets``: every assigned partition -> the first offset live consumption will
        ingest (what warm-up replayed up to). Each is a source the watermark waits for."""
        self.governor = governor
        self.partitions = {p: PartitionState(o, mono_ms) for p, o in next_offsets.items()}
        self.newest_ts_ms = 0  # newest event time ingested (any partition)
        self.idle_watermark_ms = 0  # last wall-clock watermark applied
        for p in sorted(next_offsets):
            governor.expect(p)

    def built_for(self, partitions: Iterable[int]) -> bool:
        return set(partitions) == set(self.partitions)

    def reset_partitions(self, first_offsets: dict[int, int], high_water: HighWater) -> list[int]:
        """Partitions whose log was reset under us: a message below the next offset (else a
        redelivery) while the log now ends below it too (a broker that restarted with an empty
        log numbers new messages from 0 again; without this they would all be skipped)."""
        out = []
        for p, first in sorted(first_offsets.items()):
            state = self.partitions.get(p)
            if state is None or first >= state.next_offset:
                continue
            hw = high_water(p)
            if hw is not None and hw < state.next_offset:
                out.append(p)
        return out

    def is_new(self, partition: int, offset: int) -> bool:
        """False for a message already ingested (an offset below the partition's next one)."""
        state = self.partitions.get(partition)
        return state is None or offset >= state.next_offset

    def ingest(
        self, partition: int, events: EventColumns, next_offset: int, mono_ms: float
    ) -> None:
        """Feed one partition's events (in its log order); ``next_offset`` = last offset + 1."""
        state = self.partitions.get(partition)
        if state is None:  # not in the assignment this was built for: a source from now on
            state = self.partitions[partition] = PartitionState(next_offset, mono_ms)
        state.next_offset = max(state.next_offset, next_offset)
        state.last_input_mono_ms = mono_ms
        state.idle = False
        if len(events):
            self.newest_ts_ms = max(self.newest_ts_ms, int(events.ts_ms.max()))
            self.governor.ingest(events, source=partition)

    def advance(self) -> Any:
        """Advance to the sources' watermark."""
        return self.governor.advance()

    def mark_idle(self, mono_ms: float, idle_after_ms: int, high_water: HighWater) -> list[int]:
        """Mark partitions idle that had no input for ``idle_after_ms`` and nothing left to read
        (high watermark known and not beyond ``next_offset``; unknown counts as nothing left).
        Returns the partitions newly marked."""
        marked = []
        for p, state in self.partitions.items():
            if state.idle or mono_ms - state.last_input_mono_ms < idle_after_ms:
                continue
            hw = high_water(p)
            if hw is not None and hw > state.next_offset:
                continue  # lagging: data is waiting (fetched or not), not idle
            self.set_idle(p)
            marked.append(p)
        return marked

    def set_idle(self, partition: int) -> None:
        """Exclude ``partition`` from the watermark until its next input."""
        self.partitions[partition].idle = True
        self.governor.set_idle(partition)

    def wall_watermark(self, now_ms: int, timing: Timing, live_skew_ms: int) -> int | None:
        """The wall-clock watermark to advance to, or None (a partition is not idle, the traffic
        is not live, or no progress)."""
        if not self.partitions or not all(s.idle for s in self.partitions.values()):
            return None
        if self.newest_ts_ms == 0 or abs(now_ms - self.newest_ts_ms) > live_skew_ms:
            return None
        wm = now_ms - timing.lateness_ms
        if wm <= max(self.idle_watermark_ms, self.newest_ts_ms - timing.lateness_ms):
            return None
        self.idle_watermark_ms = wm
        return wm
