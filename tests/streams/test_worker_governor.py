"""The shell's decisions about its one governor (no broker): which offsets are new, when a
partition is idle rather than lagging, when the wall clock may move the watermark."""

from __future__ import annotations

import numpy as np

from detectors.governor import Governor
from schemas.columns import EventColumns
from streams.governors import Timing, WorkerGovernor

T0 = 1_700_000_000_000
TIMING = Timing(lateness_ms=200, warmup_ms=65_000)


def _events(start_ms: int, end_ms: int, endpoint: str = "chat") -> EventColumns:
    ts = np.arange(start_ms, end_ms, 10, dtype=np.int64)
    n = len(ts)
    return EventColumns.from_arrays({
        "ts_ms": ts, "latency_ms": np.zeros(n, dtype=np.int64),
        "endpoint": np.full(n, endpoint, dtype=object), "tenant": np.full(n, "t", dtype=object),
    })  # fmt: skip


def _worker(parts: dict[int, int]) -> WorkerGovernor:
    return WorkerGovernor(Governor(), parts, mono_ms=0.0)


def test_offsets_below_the_next_one_are_not_new() -> None:
    wg = _worker({0: 100, 1: 0})
    assert not wg.is_new(0, 99) and wg.is_new(0, 100)
    wg.ingest(0, _events(T0, T0 + 100), next_offset=105, mono_ms=1.0)
    assert not wg.is_new(0, 104) and wg.is_new(0, 105)
    assert wg.is_new(7, 0)  # a partition it was not built for: everything is new


def test_every_assigned_partition_holds_the_watermark_until_it_speaks() -> None:
    wg = _worker({0: 0, 1: 0})
    wg.ingest(0, _events(T0, T0 + 2_000), next_offset=1, mono_ms=1.0)
    wg.advance()
    assert wg.governor.watermark_ms is None  # type: ignore[attr-defined]
    wg.ingest(1, _events(T0, T0 + 1_000, "search"), next_offset=1, mono_ms=1.0)
    wg.advance()
    assert wg.governor.watermark_ms == T0 + 990 - 200  # type: ignore[attr-defined]


def test_idle_needs_silence_and_nothing_left_to_read() -> None:
    wg = _worker({0: 0, 1: 0})
    wg.ingest(0, _events(T0, T0 + 5_000), next_offset=10, mono_ms=0.0)
    wg.ingest(1, _events(T0, T0 + 1_000, "search"), next_offset=10, mono_ms=0.0)
    high = {0: 10, 1: 50}  # partition 1 has 40 messages the worker has not processed yet
    assert wg.mark_idle(400.0, 500, high.get) == []  # not silent long enough
    assert wg.mark_idle(600.0, 500, high.get) == [0]  # 1 is lagging, not idle
    wg.advance()
    assert wg.governor.watermark_ms == T0 + 990 - 200  # type: ignore[attr-defined]
    high[1] = 10
    assert wg.mark_idle(700.0, 500, high.get) == [1]
    assert wg.mark_idle(800.0, 500, high.get) == []  # already idle


def test_an_idle_partition_stops_holding_back_a_busy_one() -> None:
    wg = _worker({0: 0, 1: 0})
    wg.ingest(0, _events(T0, T0 + 1_000), next_offset=1, mono_ms=0.0)
    wg.ingest(1, _events(T0, T0 + 1_000, "search"), next_offset=1, mono_ms=0.0)
    wg.ingest(0, _events(T0 + 1_000, T0 + 4_000), next_offset=2, mono_ms=600.0)
    wg.mark_idle(700.0, 500, lambda p: None)  # unknown high watermark: counts as caught up
    wg.advance()
    assert wg.governor.watermark_ms == T0 + 3_990 - 200  # type: ignore[attr-defined]
    # its next input makes it count again
    wg.ingest(1, _events(T0 + 4_000, T0 + 4_100, "search"), next_offset=2, mono_ms=800.0)
    assert not wg.partitions[1].idle


def test_wall_clock_moves_the_watermark_only_when_all_are_idle_and_live() -> None:
    wg = _worker({0: 0, 1: 0})
    wg.ingest(0, _events(T0, T0 + 1_000), next_offset=1, mono_ms=0.0)
    wg.ingest(1, _events(T0, T0 + 1_000, "search"), next_offset=1, mono_ms=0.0)
    now = T0 + 3_000
    assert wg.wall_watermark(now, TIMING, live_skew_ms=120_000) is None  # nobody idle
    wg.mark_idle(600.0, 500, lambda p: None)
    assert wg.wall_watermark(now, TIMING, live_skew_ms=120_000) == now - 200
    assert wg.wall_watermark(now, TIMING, live_skew_ms=120_000) is None  # no progress
    # a replay of old data (event time far from the wall clock) is never wall-clock advanced
    old = _worker({0: 0})
    old.ingest(0, _events(T0, T0 + 1_000), next_offset=1, mono_ms=0.0)
    old.mark_idle(600.0, 500, lambda p: None)
    assert old.wall_watermark(T0 + 600_000, TIMING, live_skew_ms=120_000) is None


def test_built_for_its_assignment_only() -> None:
    wg = _worker({0: 0, 1: 0})
    assert wg.built_for({0, 1}) and not wg.built_for({0}) and not wg.built_for({0, 1, 2})
