"""Hardening #4: one producer cannot drag event time. An event cannot complete after the message
that carries it was sent (same gateway clock), so ``schemas.eventtime`` bounds it there."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.governor import Governor
from schemas.columns import STATUS_NAMES, EventColumns
from schemas.eventtime import SEND_TOLERANCE_MS, bound_by_send_time
from schemas.frames import encode_frame
from sim.events import ColumnBuilder
from sim.runner import run
from sim.scenario import load_scenario
from streams.decode import decode_batch

DAY_MS = 86_400_000


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 10**8)), min_size=1, max_size=50),
    st.integers(0, 2 * 10**7),
)
def test_the_bound_moves_only_impossible_completions_and_counts_them(
    rows: list[tuple[int, int]], sent_ms: int
) -> None:
    ts = np.array([r[0] for r in rows], dtype=np.int64)
    lat = np.array([r[1] for r in rows], dtype=np.int64)
    ev = EventColumns.from_arrays({"ts_ms": ts + 1, "latency_ms": lat})
    out, moved = bound_by_send_time(ev, sent_ms + 1)
    done, bound = out.ts_ms + out.latency_ms, sent_ms + 1 + SEND_TOLERANCE_MS
    assert (done <= bound).all()
    possible = ev.ts_ms + ev.latency_ms <= bound
    assert moved == int((~possible).sum())
    assert (out.ts_ms[possible] == ev.ts_ms[possible]).all()
    assert (out.latency_ms[possible] == ev.latency_ms[possible]).all()
    assert (done[~possible] == bound).all() and (out.latency_ms >= 0).all()
    assert bound_by_send_time(ev, None) == (ev, 0) and bound_by_send_time(ev, 0) == (ev, 0)


def _frames(events: EventColumns, tick_ms: int = 100) -> list[tuple[bytes, int]]:
    """The events as a gateway ships them: a frame per ``tick_ms`` of completions, sent (Kafka
    timestamp) at the end of its tick."""
    done = events.ts_ms + events.latency_ms
    out = []
    for t in np.unique(done // tick_ms):
        sel = np.flatnonzero(done // tick_ms == t)
        part = events.take(sel)
        cols: dict[str, list[Any]] = {
            k: v.tolist() for k, v in part.as_dict().items() if k not in ("status",)
        }
        cols["status"] = [STATUS_NAMES[s] for s in part.status.tolist()]
        out.append((encode_frame("gw", "storm", cols), int(t + 1) * tick_ms))
    return out


def _govern(frames: list[tuple[bytes, int]], bound: bool = True) -> tuple[list[Any], int, int]:
    gov, directives, late, bounded = Governor(), [], 0, 0
    for i in range(0, len(frames), 5):  # the worker's batches: a few frames each
        chunk = [(v, ts if bound else None) for v, ts in frames[i : i + 5]]
        batch = decode_batch("events", [(0, i + j, v, ts) for j, (v, ts) in enumerate(chunk)], 0)
        bounded += batch.bounded_rows
        gov.ingest(batch.events.get(0, EventColumns.empty()))
        out = gov.advance()
        directives += out.directives
        late += out.late_events
    return directives, late, bounded


def test_one_event_a_day_late_in_a_retry_storm_changes_nothing() -> None:
    r = run(load_scenario("retry-storm"), "none")
    ev = ColumnBuilder(r.ctx).build(list(r.rows))
    clean = _frames(ev)
    # one valid event in the middle of the storm claims it took a day
    k = len(clean) // 2
    outlier = ev.take(np.array([0]))
    outlier = EventColumns(**{**outlier.as_dict(), "ts_ms": np.array([clean[k][1] - 50]),
                              "latency_ms": np.array([DAY_MS]), "event_id": np.array(["x"],
                              dtype=object)})
    poisoned = [*clean[:k], (_frames(outlier)[0][0], clean[k][1]), *clean[k:]]
    base_directives, base_late, _ = _govern(clean)
    directives, late, bounded = _govern(poisoned)
    assert bounded == 1
    unbounded_directives, unbounded_late, _ = _govern(poisoned, bound=False)
    assert unbounded_late > 1_000  # what one event did before the bound (hardening #4)
    assert len(unbounded_directives) < 0.6 * len(base_directives)  # and halved the directives
    assert base_directives, "the storm draws directives"
    assert late == base_late  # without the bound: thousands late
    # the same decisions at the same times (the one extra event moves a gateway share by 1e-4)
    def shape(ds: list[Any]) -> list[tuple[str, int, str, float]]:
        return [(d.id, d.issued_ms, d.action.type, round(d.action.rate_per_s, 1)) for d in ds]

    assert shape(directives) == shape(base_directives)
