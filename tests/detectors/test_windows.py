"""Window maths against a brute-force reference (hypothesis): batch splits do not matter, two
partitions' aggregates merge exactly, late events are counted and dropped."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.aggregate import aggregate, event_columns_matrix
from detectors.layout import ATTEMPTS, DEPTH_MAX, HLL_M, N_MAX, N_SUM
from detectors.windows import WindowStore
from schemas.columns import EventColumns

BUCKET_MS = 100
HORIZONS = (2, 5, 8)  # buckets


def make_events(draw: st.DrawFn, n: int) -> EventColumns:
    ts = draw(st.lists(st.integers(0, 1_999), min_size=n, max_size=n))
    pick = lambda vals: draw(st.lists(st.sampled_from(vals), min_size=n, max_size=n))  # noqa: E731
    return EventColumns.from_arrays(
        {
            "ts_ms": ts,
            "latency_ms": pick([0, 3, 40, 900, 5000]),
            "status": pick([0, 1, 2, 3]),
            "attempt": pick([0, 0, 1, 2]),
            "depth": pick([0, 1, 3]),
            "priority": pick([0, 5, 9]),
            "tokens_in": pick([0, 10]),
            "endpoint": pick(["a", "b"]),
            "tenant": pick(["x", "y", ""]),
            "agent_id": pick(["g1", "g2", "g3"]),
        },
        n=n,
    )


@st.composite
def events_and_cuts(draw: st.DrawFn) -> tuple[EventColumns, list[int]]:
    n = draw(st.integers(1, 60))
    ev = make_events(draw, n)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=4)))
    return ev, cuts


def new_store() -> WindowStore:
    return WindowStore(HORIZONS[-1], HORIZONS, N_SUM, N_MAX, HLL_M)


def fill(store: WindowStore, ev: EventColumns, cuts: list[int]) -> None:
    for lo, hi in zip([0, *cuts], [*cuts, len(ev)], strict=True):
        part = ev.take(np.arange(lo, hi))
        if len(part):
            store.add(aggregate(part, part.ts_ms // BUCKET_MS))


def close_until(store: WindowStore, bucket: int) -> None:
    store.next_bucket = 0 if store.next_bucket is None else store.next_bucket
    while store.next_bucket < bucket:
        store.close_next()


def reference(ev: EventColumns, until: int, h: int) -> dict[tuple[str, ...], np.ndarray]:
    """Brute force: per key, the sum of every event's contributions in buckets [until-h, until)."""
    contrib = event_columns_matrix(ev)
    out: dict[tuple[str, ...], np.ndarray] = defaultdict(lambda: np.zeros(N_SUM, dtype=np.int64))
    for i in range(len(ev)):
        b = int(ev.ts_ms[i]) // BUCKET_MS
        if until - h <= b < until:
            e, t = str(ev.endpoint[i]), str(ev.tenant[i])
            for key in (("E", e, ""), ("P", e, t), ("T", "", t)):
                out[key] = out[key] + contrib[i]
    return dict(out)


def store_sums(store: WindowStore, h: int) -> dict[tuple[str, ...], np.ndarray]:
    sums = store.horizon_sum[h]
    return {k: sums[i] for i, k in enumerate(store.keys) if sums[i, ATTEMPTS] > 0}


@settings(max_examples=60, deadline=None)
@given(events_and_cuts(), st.integers(1, 22))
def test_horizon_sums_match_brute_force_for_any_batch_split(
    case: tuple[EventColumns, list[int]], until: int
) -> None:
    ev, cuts = case
    store = new_store()
    fill(store, ev, cuts)
    close_until(store, until)
    for h, hb in enumerate(HORIZONS):
        want = {k: v for k, v in reference(ev, until, hb).items() if v[ATTEMPTS] > 0}
        got = store_sums(store, h)
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
        # the running sum equals the sum over the ring's last hb buckets
        if len(store):
            ring = store.ring_sum[:, store.recent(hb)].sum(axis=1)
            np.testing.assert_array_equal(ring, store.horizon_sum[h])


@settings(max_examples=40, deadline=None)
@given(events_and_cuts(), st.integers(0, 60), st.integers(1, 22))
def test_merge_of_two_partitions_equals_the_union(
    case: tuple[EventColumns, list[int]], split: int, until: int
) -> None:
    ev, cuts = case
    split = min(split, len(ev))
    a, b, union = new_store(), new_store(), new_store()
    fill(a, ev.take(np.arange(split)), [])
    fill(b, ev.take(np.arange(split, len(ev))), [])
    fill(union, ev, cuts)
    for s in (a, b, union):
        s.next_bucket = 0
    close_until(a, until)
    close_until(b, until)
    merged = a.merge(b)
    close_until(union, until)
    for h in range(len(HORIZONS)):
        got, want = store_sums(merged, h), store_sums(union, h)
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    for k in union.keys:
        i, j = union.index[k], merged.index[k]
        np.testing.assert_array_equal(union.ring_max[i], merged.ring_max[j])
        np.testing.assert_array_equal(union.ring_hll[i], merged.ring_hll[j])


@settings(max_examples=40, deadline=None)
@given(events_and_cuts())
def test_pending_merge_then_close_equals_one_batch(case: tuple[EventColumns, list[int]]) -> None:
    ev, cuts = case
    one, parts = new_store(), new_store()
    one.add(aggregate(ev, ev.ts_ms // BUCKET_MS))
    fill(parts, ev, cuts)
    close_until(one, 21)
    close_until(parts, 21)
    assert one.keys == parts.keys  # rows depend only on closed data
    np.testing.assert_array_equal(one.ring_sum, parts.ring_sum)
    np.testing.assert_array_equal(one.ring_max[..., DEPTH_MAX], parts.ring_max[..., DEPTH_MAX])


def test_idle_keys_are_evicted_by_event_time() -> None:
    store = new_store()
    ev = EventColumns.from_arrays({"ts_ms": [50], "endpoint": ["a"], "tenant": ["x"]})
    store.add(aggregate(ev, ev.ts_ms // BUCKET_MS))
    close_until(store, HORIZONS[-1])
    assert not store.evictable().any()
    close_until(store, HORIZONS[-1] + 1)
    drop = store.evictable()
    assert drop.all()
    store.evict(drop)
    assert len(store) == 0 and store.is_idle()
