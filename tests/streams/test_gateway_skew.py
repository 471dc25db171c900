"""Hardening #4: a gateway whose clock runs behind another's on the same endpoint loses nothing.

Both gateways' events share a partition (the endpoint is the key). Judged against one event
clock, the late gateway's events looked older than what the other had already moved the
watermark to: with 2 s of skew, about half of a retry storm's events were late and the
directives changed. Each gateway is now its own source of the watermark (``streams.governors``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors.governor import Governor
from schemas.columns import STATUS_NAMES, EventColumns
from schemas.frames import encode_frame
from sim.events import ColumnBuilder
from sim.runner import run
from sim.scenario import load_scenario
from streams.decode import decode_batch
from streams.governors import WorkerGovernor

SKEW_MS = 2_000


def _storm() -> EventColumns:
    r = run(load_scenario("retry-storm"), "none")
    return ColumnBuilder(r.ctx).build(list(r.rows))


def _shipped(events: EventColumns, skews: dict[str, int], tick_ms: int = 100) -> list[Any]:
    """The events split over gateways (by row, round robin), each gateway stamping them, and its
    frames' Kafka timestamps, with its own clock (true time + its skew); the frames in the
    order they reach the partition (true send time)."""
    done = events.ts_ms + events.latency_ms
    names = list(skews)
    owner = np.arange(len(events)) % len(names)
    out = []
    for g, name in enumerate(names):
        skew = skews[name]
        for t in np.unique(done[owner == g] // tick_ms):
            sel = np.flatnonzero((owner == g) & (done // tick_ms == t))
            part = events.take(sel)
            cols: dict[str, list[Any]] = {
                k: v.tolist() for k, v in part.as_dict().items() if k not in ("status",)
            }
            cols["ts_ms"] = (part.ts_ms + skew).tolist()
            cols["gateway_id"] = [name] * len(part)
            cols["status"] = [STATUS_NAMES[s] for s in part.status.tolist()]
            sent_true = int(t + 1) * tick_ms
            out.append((sent_true, g, encode_frame(name, "storm", cols), sent_true + skew))
    out.sort(key=lambda m: (m[0], m[1]))
    return [(value, sent) for _, _, value, sent in out]


def _govern(frames: list[Any], per_gateway: bool) -> tuple[list[Any], int, int]:
    """(directives, late events, events) through the worker's governor (one source per gateway)
    or, as before, one source per partition."""
    wg = WorkerGovernor(Governor(), {0: 0}, mono_ms=0.0)
    directives, late, n = [], 0, 0
    for i in range(0, len(frames), 5):  # the worker's batches: a few frames each
        chunk = frames[i : i + 5]
        msgs = [(0, i + j, v, ts) for j, (v, ts) in enumerate(chunk)]
        events = decode_batch("events", msgs, 0).events.get(0, EventColumns.empty())
        n += len(events)
        if per_gateway:
            wg.ingest(0, events, next_offset=i + len(chunk), mono_ms=float(i))
        else:
            wg.governor.ingest(events, source=0)
        out = wg.advance()
        directives += out.directives
        late += out.late_events
    return directives, late, n


def test_two_seconds_of_skew_between_gateways_loses_no_event() -> None:
    storm = _storm()
    in_sync = _shipped(storm, {"gw-a": 0, "gw-b": 0})
    skewed = _shipped(storm, {"gw-a": 0, "gw-b": -SKEW_MS})
    base, base_late, n = _govern(in_sync, per_gateway=True)
    assert base and base_late == 0 and n == len(storm)
    # before: one event clock per partition; gw-b's events look 2 s old against gw-a's progress
    _, old_late, _ = _govern(skewed, per_gateway=False)
    assert old_late > 0.3 * n
    directives, late, n_skewed = _govern(skewed, per_gateway=True)
    assert late == 0 and n_skewed == n
    # the storm is still broken: the same episodes (gw-b's half is placed 2 s early, so the
    # features differ a little; the decisions do not go away)
    def episodes(ds: list[Any]) -> set[tuple[Any, str]]:
        return {(d.scope, d.action.type) for d in ds}

    assert episodes(directives) == episodes(base)
    # and either clock may be the wrong one: ahead instead of behind
    _, late_ahead, _ = _govern(_shipped(storm, {"gw-a": SKEW_MS, "gw-b": 0}), per_gateway=True)
    assert late_ahead == 0


def _events(start_ms: int, end_ms: int, gateway: str) -> EventColumns:
    ts = np.arange(start_ms, end_ms, 10, dtype=np.int64)
    n = len(ts)
    return EventColumns.from_arrays({
        "ts_ms": ts, "latency_ms": np.zeros(n, dtype=np.int64),
        "endpoint": np.full(n, "chat", dtype=object), "tenant": np.full(n, "t", dtype=object),
        "gateway_id": np.full(n, gateway, dtype=object),
    })  # fmt: skip


T0 = 1_700_000_000_000


def test_a_clock_far_behind_is_not_waited_for_and_its_events_are_late() -> None:
    wg = WorkerGovernor(Governor(), {0: 0}, mono_ms=0.0, max_gateway_skew_ms=5_000)
    wg.ingest(0, _events(T0, T0 + 1_000, "ok"), next_offset=1, mono_ms=0.0)
    wg.ingest(0, _events(T0 - 60_000, T0 - 59_000, "an-hour-off"), next_offset=2, mono_ms=0.0)
    wg.advance()
    assert wg.governor.watermark_ms == T0 + 990 - 200  # type: ignore[attr-defined]
    assert wg.skewed_gateways == 1
    wg.ingest(0, _events(T0 + 1_000, T0 + 9_000, "ok"), next_offset=3, mono_ms=0.0)
    wg.ingest(0, _events(T0 - 59_000, T0 - 58_000, "an-hour-off"), next_offset=4, mono_ms=0.0)
    out = wg.advance()
    assert out.late_events == 100  # counted (and kept in history), not governed
    assert wg.governor.watermark_ms == T0 + 8_990 - 200  # type: ignore[attr-defined]


def test_within_the_bound_the_watermark_waits_for_the_slower_clock() -> None:
    wg = WorkerGovernor(Governor(), {0: 0}, mono_ms=0.0)
    wg.ingest(0, _events(T0, T0 + 3_000, "ahead"), next_offset=1, mono_ms=0.0)
    wg.ingest(0, _events(T0 - 2_000, T0 + 1_000, "behind"), next_offset=2, mono_ms=0.0)
    assert wg.advance().late_events == 0
    assert wg.governor.watermark_ms == T0 + 990 - 200  # type: ignore[attr-defined]


def test_a_quiet_gateway_stops_holding_the_watermark_after_idle_after_ms() -> None:
    wg = WorkerGovernor(Governor(), {0: 0}, mono_ms=0.0)
    wg.ingest(0, _events(T0, T0 + 1_000, "busy"), next_offset=1, mono_ms=0.0)
    wg.ingest(0, _events(T0, T0 + 500, "quiet"), next_offset=2, mono_ms=0.0)
    wg.ingest(0, _events(T0 + 1_000, T0 + 2_000, "busy"), next_offset=3, mono_ms=400.0)
    wg.advance()
    assert wg.governor.watermark_ms == T0 + 490 - 200  # type: ignore[attr-defined]
    high = {0: 3}  # nothing left to read
    assert wg.mark_idle(550.0, 500, high.get) == []  # the partition is not idle; "quiet" is
    wg.advance()
    assert wg.governor.watermark_ms == T0 + 1_990 - 200  # type: ignore[attr-defined]
    high[0] = 9  # a partition with messages left to read: nobody in it is idle
    wg2 = WorkerGovernor(Governor(), {0: 0}, mono_ms=0.0)
    wg2.ingest(0, _events(T0, T0 + 1_000, "busy"), next_offset=1, mono_ms=0.0)
    wg2.ingest(0, _events(T0, T0 + 500, "quiet"), next_offset=2, mono_ms=0.0)
    wg2.mark_idle(900.0, 500, high.get)
    wg2.advance()
    assert wg2.governor.watermark_ms == T0 + 490 - 200  # type: ignore[attr-defined]


def test_gateways_beyond_the_bound_share_the_partitions_source_or_replace_an_idle_one() -> None:
    wg = WorkerGovernor(Governor(), {0: 0}, mono_ms=0.0, max_gateways=2)
    for i, name in enumerate(("a", "b", "c")):
        wg.ingest(0, _events(T0, T0 + 1_000, name), next_offset=i + 1, mono_ms=0.0)
    assert set(wg.partitions[0].gateways) == {"a", "b"} and wg.partitions[0].shared
    sources = wg.governor.sources  # type: ignore[attr-defined]
    assert sources[0] == T0 + 990  # "c" went to the partition's own source
    wg.mark_idle(600.0, 500, lambda p: None)  # everyone idle
    wg.ingest(0, _events(T0 + 1_000, T0 + 2_000, "d"), next_offset=4, mono_ms=700.0)
    assert "d" in wg.partitions[0].gateways and len(wg.partitions[0].gateways) == 2
    assert len(wg.governor.sources) == 3  # type: ignore[attr-defined]  # one forgotten
