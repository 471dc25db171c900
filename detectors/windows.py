"""Event-time windows: fixed buckets, ring buffers of per-bucket aggregates, sliding horizons.

A bucket ``b`` covers event times ``[b * bucket_ms, (b + 1) * bucket_ms)``. Buckets stay *open*
as ``Partial`` pieces (pre-aggregated per (bucket, key), mergeable), filed by bucket, until the
watermark passes their end (closing a bucket touches only its own pieces, however many buckets are
open: a watermark held back by a slow source costs memory, not time);
closing a bucket moves it into a ring of the last ``ring_buckets`` closed buckets per key and
updates one running sum per horizon (``sum += entering - leaving``, exact integer arithmetic).
Nothing here reads a clock: time moves only when ``close_next`` is called.

Keys are tuples of strings. Rows are assigned when a key first appears in a *closed* bucket (new
keys of a bucket in sorted order), so row order depends only on the closed data, not on how the
events were split into batches. A key with no data in the whole ring is evicted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.errors import WatermarkError
from detectors.layout import I64, U8

Key = tuple[str, ...]


def _empty_i64(*shape: int) -> I64:
    return np.zeros(shape, dtype=np.int64)


def _rows_at(ufunc: np.ufunc, out: np.ndarray, rows: I64, values: np.ndarray) -> None:
    """``ufunc.at(out, rows, values)`` for 2-D ``out``, as one (much faster) 1-D ``ufunc.at``."""
    c = out.shape[1]
    if c:
        flat = (rows[:, None] * c + np.arange(c)).reshape(-1)
        ufunc.at(out.reshape(-1), flat, values.reshape(-1))


def _max_axis1(a: np.ndarray) -> np.ndarray:
    """``a.max(axis=1, initial=0)`` of a (rows, n, cols) array by halving (long contiguous runs
    instead of a reduction over a middle axis; max is exact in any order)."""
    if a.shape[1] == 0 or a.shape[2] < 8:
        direct: np.ndarray = a.max(axis=1, initial=0)
        return direct
    v = a
    while v.shape[1] > 1:
        n = v.shape[1]
        h = n // 2
        w = np.maximum(v[:, :h], v[:, h : 2 * h])
        if n % 2:
            w[:, 0] = np.maximum(w[:, 0], v[:, 2 * h])
        v = w
    out: np.ndarray = np.maximum(v[:, 0], 0)
    return out


@dataclass(slots=True)
class Partial:
    """Open (not yet closed) aggregates: one row per (bucket, key) group of some batch.

    Rows of the same (bucket, key) may repeat (several batches or sources); they are combined
    exactly (sums, maxes, HyperLogLog registers) when their bucket closes.
    """

    n_sum: int
    n_max: int
    hll_m: int
    keys: list[Key] = field(default_factory=list)
    bucket: I64 = field(default_factory=lambda: _empty_i64(0))
    key_idx: I64 = field(default_factory=lambda: _empty_i64(0))
    sums: I64 = field(default_factory=lambda: _empty_i64(0, 0))
    maxes: I64 = field(default_factory=lambda: _empty_i64(0, 0))
    hll: U8 = field(default_factory=lambda: np.zeros((0, 0), dtype=np.uint8))

    def __post_init__(self) -> None:
        g = self.bucket.shape[0]
        if self.sums.shape != (g, self.n_sum):
            self.sums = _empty_i64(g, self.n_sum)
        if self.maxes.shape != (g, self.n_max):
            self.maxes = _empty_i64(g, self.n_max)
        if self.hll.shape != (g, self.hll_m):
            self.hll = np.zeros((g, self.hll_m), dtype=np.uint8)

    def __len__(self) -> int:
        return int(self.bucket.shape[0])


class WindowStore:
    """Closed buckets per key in a ring, with running sums over each horizon."""

    def __init__(
        self,
        ring_buckets: int,
        horizons_buckets: tuple[int, ...],
        n_sum: int,
        n_max: int = 0,
        hll_m: int = 0,
    ) -> None:
        if any(h < 1 or h > ring_buckets for h in horizons_buckets):
            raise ValueError("every horizon must be 1..ring_buckets buckets")
        self.ring_buckets = ring_buckets
        self.horizons_buckets = horizons_buckets
        self.n_sum, self.n_max, self.hll_m = n_sum, n_max, hll_m
        self.keys: list[Key] = []
        self.index: dict[Key, int] = {}
        self.ring_sum = _empty_i64(0, ring_buckets, n_sum)
        self.ring_max = _empty_i64(0, ring_buckets, n_max)
        self.ring_hll = np.zeros((0, ring_buckets, hll_m), dtype=np.uint8)
        self.horizon_sum = [_empty_i64(0, n_sum) for _ in horizons_buckets]
        self.first_bucket = _empty_i64(0)
        self.last_bucket = _empty_i64(0)
        self.next_bucket: int | None = None  # first bucket not yet closed
        self.pending: dict[int, list[Partial]] = {}  # open bucket -> its pieces, oldest first
        self.version = 0  # bumped whenever the key set changes
        # id(piece keys) -> (those keys, store version, their store rows); pieces of one add
        # share one key list, so a batch's keys are looked up once per key set change
        self._row_cache: dict[int, tuple[list[Key], int, I64]] = {}

    def __len__(self) -> int:
        return len(self.keys)

    # --- input ---
    def add(self, partial: Partial) -> None:
        """Add open aggregates (callers drop rows of closed buckets first: they are late)."""
        n = len(partial)
        if not n:
            return
        b = partial.bucket
        if b[0] == b[-1] and (b == b[0]).all():
            self.pending.setdefault(int(b[0]), []).append(partial)
            return
        order = np.argsort(b, kind="stable")
        buckets, starts = np.unique(b[order], return_index=True)
        ends = np.append(starts[1:], n)
        for bucket, lo, hi in zip(buckets.tolist(), starts.tolist(), ends.tolist(), strict=True):
            rows = order[lo:hi]
            piece = Partial(
                partial.n_sum,
                partial.n_max,
                partial.hll_m,
                partial.keys,
                partial.bucket[rows],
                partial.key_idx[rows],
                partial.sums[rows],
                partial.maxes[rows],
                partial.hll[rows],
            )
            self.pending.setdefault(bucket, []).append(piece)

    def pending_min_bucket(self) -> int | None:
        return min(self.pending) if self.pending else None

    def is_idle(self) -> bool:
        """True when no closed bucket in the ring holds any data."""
        longest = self.horizon_sum[int(np.argmax(self.horizons_buckets))]
        return not bool(longest.any())

    # --- time ---
    def close_next(self) -> int:
        """Close bucket ``next_bucket``; return how many new keys it appended."""
        if self.next_bucket is None:
            first = self.pending_min_bucket()
            if first is None:
                raise WatermarkError("nothing to close: no data and no start bucket")
            self.next_bucket = first
        b = self.next_bucket
        # the pieces of bucket b (and of any earlier bucket left over)
        pieces = [q for bucket in sorted(x for x in self.pending if x <= b)
                  for q in self.pending.pop(bucket)]  # fmt: skip
        k0 = len(self.keys)
        if not pieces:
            rows, unique_rows = _empty_i64(0), True
        else:
            fresh: set[Key] = set()
            for q in pieces:
                mapped = self._row_map(q.keys)[q.key_idx]
                if (mapped < 0).any():
                    fresh.update(q.keys[i] for i in np.unique(q.key_idx[mapped < 0]).tolist())
            if fresh:
                self._grow(sorted(fresh), first=b, last=b)
            rows = np.concatenate([self._row_map(q.keys)[q.key_idx] for q in pieces])
            unique_rows = len(pieces) == 1 or int(np.bincount(rows).max()) <= 1
            sums = pieces[0].sums if len(pieces) == 1 else np.concatenate([q.sums for q in pieces])
        k = len(self.keys)
        slot = b % self.ring_buckets
        new_sum = _empty_i64(k, self.n_sum)
        if pieces:
            if unique_rows:  # one row per key: a plain scatter equals np.add.at
                new_sum[rows] = sums
            else:
                _rows_at(np.add, new_sum, rows, sums)
        for h, hb in enumerate(self.horizons_buckets):
            self.horizon_sum[h] += new_sum - self.ring_sum[:, (b - hb) % self.ring_buckets]
        self.ring_sum[:, slot] = new_sum
        if self.n_max:
            new_max = _empty_i64(k, self.n_max)
            if pieces:
                maxes = np.concatenate([q.maxes for q in pieces])
                if unique_rows:  # max with the zeros np.maximum.at would start from
                    new_max[rows] = np.maximum(maxes, 0)
                else:
                    _rows_at(np.maximum, new_max, rows, maxes)
            self.ring_max[:, slot] = new_max
        if self.hll_m:
            new_hll = np.zeros((k, self.hll_m), dtype=np.uint8)
            if pieces:
                hll = np.concatenate([q.hll for q in pieces])
                if unique_rows:
                    new_hll[rows] = hll
                else:
                    _rows_at(np.maximum, new_hll, rows, hll)
            self.ring_hll[:, slot] = new_hll
        self.last_bucket[rows] = b
        self.next_bucket = b + 1
        return k - k0

    def skip_to(self, bucket: int) -> None:
        """Jump over empty buckets; only valid when ``is_idle`` and nothing pending before it."""
        if not self.is_idle():
            raise WatermarkError("skip_to needs an idle store")
        floor = self.pending_min_bucket()
        self.next_bucket = bucket if floor is None else min(bucket, floor)

    def evictable(self) -> np.ndarray:
        """Mask of keys with no data anywhere in the ring (idle longer than the longest horizon)."""
        if self.next_bucket is None:
            return np.zeros(len(self.keys), dtype=bool)
        return self.last_bucket < self.next_bucket - self.ring_buckets

    def evict(self, drop: np.ndarray) -> np.ndarray:
        """Remove keys where ``drop``; returns the keep mask (for aligned state elsewhere)."""
        keep = ~drop
        self.version += 1
        self.keys = [k for k, kept in zip(self.keys, keep.tolist(), strict=True) if kept]
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.ring_sum = self.ring_sum[keep]
        self.ring_max = self.ring_max[keep]
        self.ring_hll = self.ring_hll[keep]
        self.horizon_sum = [s[keep] for s in self.horizon_sum]
        self.first_bucket = self.first_bucket[keep]
        self.last_bucket = self.last_bucket[keep]
        return keep

    def _row_map(self, keys: list[Key]) -> I64:
        """Store row of each of ``keys`` (-1 when absent), cached while the pending key list and
        the store's key set stay the same (the usual case from one bucket to the next)."""
        cached = self._row_cache.get(id(keys))
        if cached is not None and cached[0] is keys and cached[1] == self.version:
            out: I64 = cached[2]
            return out
        if len(self._row_cache) > 256:
            self._row_cache = {}  # entries of pieces long closed
        get = self.index.get
        out = np.fromiter((get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        self._row_cache[id(keys)] = (keys, self.version, out)
        return out

    def _grow(self, new: list[Key], first: int, last: int) -> None:
        n = len(new)
        if not n:
            return
        self.version += 1
        for k in new:
            self.index[k] = len(self.keys)
            self.keys.append(k)
        r = self.ring_buckets
        self.ring_sum = np.concatenate([self.ring_sum, _empty_i64(n, r, self.n_sum)])
        self.ring_max = np.concatenate([self.ring_max, _empty_i64(n, r, self.n_max)])
        self.ring_hll = np.concatenate(
            [self.ring_hll, np.zeros((n, r, self.hll_m), dtype=np.uint8)]
        )
        self.horizon_sum = [
            np.concatenate([s, _empty_i64(n, self.n_sum)]) for s in self.horizon_sum
        ]
        self.first_bucket = np.concatenate([self.first_bucket, np.full(n, first, dtype=np.int64)])
        self.last_bucket = np.concatenate([self.last_bucket, np.full(n, last, dtype=np.int64)])

    # --- reading ---
    def recent(self, n_buckets: int) -> np.ndarray:
        """Ring slots of the last ``n_buckets`` closed buckets, oldest first."""
        assert self.next_bucket is not None
        return (np.arange(self.next_bucket - n_buckets, self.next_bucket)) % self.ring_buckets

    def _recent_slices(self, n_buckets: int) -> list[slice]:
        """``recent(n_buckets)`` as at most two slices of ring slots (oldest first)."""
        assert self.next_bucket is not None
        r = self.ring_buckets
        lo = (self.next_bucket - n_buckets) % r
        hi = lo + n_buckets
        return [slice(lo, hi)] if hi <= r else [slice(lo, r), slice(0, hi - r)]

    def _window_reduce_max(self, ring: np.ndarray, n_buckets: int, rows: np.ndarray | None) -> Any:
        """Max over the last ``n_buckets`` ring slots of ``ring`` (keys, slots, cols), per key."""
        sub = rows is not None and 2 * rows.shape[0] < ring.shape[0]
        parts = [
            _max_axis1(ring[:, s][rows] if sub else ring[:, s])
            for s in self._recent_slices(n_buckets)
        ]
        out = parts[0] if len(parts) == 1 else np.maximum(parts[0], parts[1])
        return out if rows is None or sub else out[rows]

    def window_max(self, n_buckets: int) -> I64:
        out: I64 = self._window_reduce_max(self.ring_max, n_buckets, None)
        return out

    def window_hll(self, n_buckets: int) -> U8:
        out: U8 = self._window_reduce_max(self.ring_hll, n_buckets, None)
        return out

    def window_max_rows(self, n_buckets: int, rows: np.ndarray) -> I64:
        """``window_max(n_buckets)[rows]``."""
        out: I64 = self._window_reduce_max(self.ring_max, n_buckets, rows)
        return out

    def window_hll_rows(self, n_buckets: int, rows: np.ndarray) -> U8:
        """``window_hll(n_buckets)[rows]``."""
        out: U8 = self._window_reduce_max(self.ring_hll, n_buckets, rows)
        return out

    def window_column(self, n_buckets: int, rows: np.ndarray, col: int) -> I64:
        """Sum column ``col`` of ``rows`` over the last ``n_buckets`` buckets, (rows, n_buckets),
        oldest first (``ring_sum[rows][:, recent(n_buckets), col]``)."""
        out: I64 = self.ring_sum[rows[:, None], self.recent(n_buckets)[None, :], col]
        return out

    def merge(self, other: WindowStore) -> WindowStore:
        """A store holding both stores' data (same geometry and same closed watermark)."""
        same = (self.ring_buckets, self.horizons_buckets, self.n_sum, self.n_max, self.hll_m) == (
            other.ring_buckets,
            other.horizons_buckets,
            other.n_sum,
            other.n_max,
            other.hll_m,
        )
        if not same:
            raise WatermarkError("stores differ in geometry")
        if None not in (self.next_bucket, other.next_bucket) and (
            self.next_bucket != other.next_bucket
        ):
            raise WatermarkError("stores must have closed up to the same bucket")
        out = WindowStore(
            self.ring_buckets, self.horizons_buckets, self.n_sum, self.n_max, self.hll_m
        )
        out.next_bucket = self.next_bucket if self.next_bucket is not None else other.next_bucket
        big = int(np.iinfo(np.int64).max)
        for src in (self, other):
            out._grow([k for k in src.keys if k not in out.index], first=big, last=-1)
            rows = np.array([out.index[k] for k in src.keys], dtype=np.int64)
            out.ring_sum[rows] += src.ring_sum
            out.ring_max[rows] = np.maximum(out.ring_max[rows], src.ring_max)
            out.ring_hll[rows] = np.maximum(out.ring_hll[rows], src.ring_hll)
            for h in range(len(out.horizon_sum)):
                out.horizon_sum[h][rows] += src.horizon_sum[h]
            out.first_bucket[rows] = np.minimum(out.first_bucket[rows], src.first_bucket)
            out.last_bucket[rows] = np.maximum(out.last_bucket[rows], src.last_bucket)
        for src in (self, other):
            for bucket, pieces in src.pending.items():
                out.pending.setdefault(bucket, []).extend(pieces)
        return out
