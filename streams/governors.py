"""The worker's one Governor over its assigned partitions, and the shell's clock decisions.

Each *gateway* of an assigned events partition is one *source* of the governor
(``detectors.governor``): the core's watermark is the minimum over active sources, so events are
judged late only against their own gateway's clock. A gateway whose clock runs 2 s behind
another's on the same endpoint (so in the same partition) holds the watermark back by its skew
instead of seeing its events turned late by the other's progress; a partition that lags does not
see its events turned late by another's either. The per-bucket work (features, scores, policy)
still runs once per worker. The core never reads a clock; the shell decides:

- **which offsets are new**: a partition's ``next_offset`` is the first offset not yet ingested
  (warm-up replays up to it); a live message below it is already in the governor and is skipped,
  so a message delivered twice (redelivery after a rebalance) is never counted twice;
- **idleness**: a partition that got no input for ``idle_after_ms`` of wall time *and* has nothing
  left to read (the consumer's high watermark is not beyond ``next_offset``: a partition that is
  behind is lagging, not idle) is marked idle: excluded from the watermark until its next event.
  So is a gateway that sent nothing for ``idle_after_ms`` while its partition has nothing left to
  read, and, in event time, a gateway more than ``max_gateway_skew_ms`` behind the newest gateway
  of its partition (a clock that wrong, or a gateway gone quiet during a replay, is not waited
  for: its events are late, counted, and kept in history);
- **how many gateways** are told apart: at most ``max_gateways`` per partition; beyond, the one
  idle the longest is forgotten, or, when none is idle, the newcomer shares the partition's own
  source (its skew is then judged as before: against the others' progress);
- **the wall clock**: when every partition is idle and the traffic is live (newest event time
  within ``live_skew_ms`` of the wall clock), the watermark moves to ``now_ms - lateness_ms`` so
  windows close and episodes release although no event moves event time. Replays of old data
  (event time far from the wall clock) are never advanced by the wall clock, so they stay
  deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np

from schemas.columns import EventColumns


class GovernorLike(Protocol):
    """The part of ``detectors.governor.Governor`` the shell uses."""

    def ingest(self, events: EventColumns, source: int = 0) -> Any: ...
    def advance(self, watermark_ms: int | None = None) -> Any: ...
    def expect(self, source: int) -> None: ...
    def set_idle(self, source: int, idle: bool = True) -> None: ...
    def forget(self, source: int) -> None: ...
    def source_newest_ms(self, source: int) -> int | None: ...


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
class GatewaySource:
    source: int  # the core's source id
    last_input_mono_ms: float
    idle: bool = False


@dataclass(slots=True)
class PartitionState:
    next_offset: int  # first offset not yet ingested
    last_input_mono_ms: float  # wall (monotonic) time of its last input, or of going live
    idle: bool = False
    gateways: dict[str, GatewaySource] = field(default_factory=dict)
    shared: bool = False  # its own source carries gateways beyond ``max_gateways``


MAX_GATEWAY_SKEW_MS: Final = 5_000  # = the gateways' max_clock_skew_ms for directives
MAX_GATEWAYS: Final = 64  # per partition
_GATEWAY_SOURCE_BASE: Final = 1 << 32  # gateway source ids; a partition's own id is its number


HighWater = Callable[[int], int | None]  # partition -> the consumer's high watermark, if known


class WorkerGovernor:
    """One governor, one source per gateway of each assigned partition."""

    def __init__(
        self,
        governor: GovernorLike,
        next_offsets: dict[int, int],
        mono_ms: float,
        max_gateway_skew_ms: int = MAX_GATEWAY_SKEW_MS,
        max_gateways: int = MAX_GATEWAYS,
    ) -> None:
        """``next_offsets``: every assigned partition -> the first offset live consumption will
        ingest (what warm-up replayed up to). Each holds the watermark until it speaks."""
        self.governor = governor
        self.partitions = {p: PartitionState(o, mono_ms) for p, o in next_offsets.items()}
        self.max_gateway_skew_ms = max_gateway_skew_ms
        self.max_gateways = max_gateways
        self.newest_ts_ms = 0  # newest event time ingested (any partition)
        self.idle_watermark_ms = 0  # last wall-clock watermark applied
        self.skewed_gateways = 0  # times a gateway was found too far behind to be waited for
        self._next_source = _GATEWAY_SOURCE_BASE
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
        state = self._partition(partition, next_offset, mono_ms)
        state.next_offset = max(state.next_offset, next_offset)
        state.last_input_mono_ms = mono_ms
        state.idle = False
        self._feed(partition, state, events, mono_ms)

    def feed(self, partition: int, events: EventColumns, mono_ms: float) -> None:
        """Feed one partition's events to the sources of their gateways (warm-up calls this
        directly: its offsets are not live ones)."""
        self._feed(partition, self._partition(partition, 0, mono_ms), events, mono_ms)

    def _feed(
        self, partition: int, state: PartitionState, events: EventColumns, mono_ms: float
    ) -> None:
        if not len(events):
            return
        self.newest_ts_ms = max(self.newest_ts_ms, int(events.ts_ms.max()))
        gw = events.gateway_id
        if bool((gw == gw[0]).all()):
            self._feed_gateway(partition, state, str(gw[0]), events, mono_ms)
        else:
            names, inverse = np.unique(gw.astype(str), return_inverse=True)
            for k, name in enumerate(names.tolist()):
                part = events.take(np.flatnonzero(inverse == k))
                self._feed_gateway(partition, state, name, part, mono_ms)
        self._not_waiting_for_stragglers(state)

    def _partition(self, partition: int, next_offset: int, mono_ms: float) -> PartitionState:
        state = self.partitions.get(partition)
        if state is None:  # not in the assignment this was built for: a source from now on
            state = self.partitions[partition] = PartitionState(next_offset, mono_ms)
        return state

    def _feed_gateway(
        self,
        partition: int,
        state: PartitionState,
        name: str,
        events: EventColumns,
        mono_ms: float,
    ) -> None:
        src = state.gateways.get(name) or self._new_gateway(partition, state, name, mono_ms)
        if src is None:  # too many gateways at once: the partition's own source
            state.shared = True
            self.governor.ingest(events, source=partition)
            return
        src.last_input_mono_ms, src.idle = mono_ms, False
        self.governor.ingest(events, source=src.source)

    def _new_gateway(
        self, partition: int, state: PartitionState, name: str, mono_ms: float
    ) -> GatewaySource | None:
        if len(state.gateways) >= self.max_gateways:
            idle = [(g.last_input_mono_ms, n) for n, g in state.gateways.items() if g.idle]
            if not idle:
                return None
            gone = state.gateways.pop(min(idle)[1])
            self.governor.forget(gone.source)
        elif not state.gateways:  # the partition speaks: its own source waits for nobody now
            self.governor.set_idle(partition)
        src = state.gateways[name] = GatewaySource(self._next_source, mono_ms)
        self._next_source += 1
        return src

    def _not_waiting_for_stragglers(self, state: PartitionState) -> None:
        """Event-time idleness: a gateway more than ``max_gateway_skew_ms`` behind the newest of
        its partition is not waited for (until its next event)."""
        newest = [(g, self.governor.source_newest_ms(g.source)) for g in state.gateways.values()]
        known = [t for _, t in newest if t is not None]
        if len(known) < 2:
            return
        floor = max(known) - self.max_gateway_skew_ms
        for src, t in newest:
            if t is not None and t < floor and not src.idle:
                self.skewed_gateways += 1
                self._idle(src)

    def _idle(self, src: GatewaySource) -> None:
        src.idle = True
        self.governor.set_idle(src.source)

    def advance(self) -> Any:
        """Advance to the sources' watermark."""
        return self.governor.advance()

    def mark_idle(self, mono_ms: float, idle_after_ms: int, high_water: HighWater) -> list[int]:
        """Mark partitions idle that had no input for ``idle_after_ms`` and nothing left to read
        (high watermark known and not beyond ``next_offset``; unknown counts as nothing left),
        and, in the others with nothing left to read, the gateways silent that long. Returns
        the partitions newly marked."""
        marked = []
        for p, state in self.partitions.items():
            if state.idle:
                continue
            hw = high_water(p)
            if hw is not None and hw > state.next_offset:
                continue  # lagging: data is waiting (fetched or not), not idle
            if mono_ms - state.last_input_mono_ms >= idle_after_ms:
                self.set_idle(p)
                marked.append(p)
                continue
            for src in state.gateways.values():
                if not src.idle and mono_ms - src.last_input_mono_ms >= idle_after_ms:
                    self._idle(src)
        return marked

    def set_idle(self, partition: int) -> None:
        """Exclude ``partition`` (its gateways) from the watermark until its next input."""
        state = self.partitions[partition]
        state.idle = True
        self.governor.set_idle(partition)
        for src in state.gateways.values():
            self._idle(src)

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
