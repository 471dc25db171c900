"""Event-time windows: fixed buckets, ring buffers of per-bucket aggregates, sliding horizons.

A bucket ``b`` covers event times ``[b * bucket_ms, (b + 1) * bucket_ms)``. Buckets stay *open* in
a ``Partial`` (pre-aggregated per (bucket, key), mergeable) until the watermark passes their end;
closing a bucket moves it into a ring of the last ``ring_buckets`` closed buckets per key and
updates one running sum per horizon (``sum += entering - leaving``, exact integer arithmetic).
Nothing here reads a clock: time moves only when ``close_next`` is called.

Keys are tuples of strings. Rows are assigned when a key first appears in a *closed* bucket (new
keys of a bucket in sorted order), so row order depends only on the closed data, not on how the
events were split into batches. A key with no data in the whole ring is evicted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from detectors.errors import WatermarkError
from detectors.layout import I64, U8

Key = tuple[str, ...]


def _empty_i64(*shape: int) -> I64:
    return np.zeros(shape, dtype=np.int64)


@dataclass(slots=True)
class Partial:
    """Open (not yet closed) aggregates: one row per (bucket, key) group of some batch.

    Rows of the same (bucket, key) may repeat (several batches); they are combined on close.
    ``merge`` concatenates, so the aggregates of two partitions combine exactly.
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

    def merge(self, other: Partial) -> Partial:
        """A new partial holding both (keys unified)."""
        index = {k: i for i, k in enumerate(self.keys)}
        keys = list(self.keys)
        remap = np.empty(len(other.keys), dtype=np.int64)
        for j, k in enumerate(other.keys):
            i = index.get(k)
            if i is None:
                i = index[k] = len(keys)
                keys.append(k)
            remap[j] = i
        return Partial(
            self.n_sum,
            self.n_max,
            self.hll_m,
            keys,
            np.concatenate([self.bucket, other.bucket]),
            np.concatenate([self.key_idx, remap[other.key_idx]]),
            np.concatenate([self.sums, other.sums]),
            np.concatenate([self.maxes, other.maxes]),
            np.concatenate([self.hll, other.hll]),
        )

    def split(self, upto_bucket: int) -> tuple[Partial, Partial]:
        """(rows with bucket < upto_bucket, the rest)."""
        m = self.bucket < upto_bucket
        return self._take(m), self._take(~m)

    def _take(self, m: np.ndarray) -> Partial:
        """Rows where ``m``, with the key list compacted to the keys those rows use."""
        used, key_idx = np.unique(self.key_idx[m], return_inverse=True)
        return Partial(
            self.n_sum,
            self.n_max,
            self.hll_m,
            [self.keys[int(i)] for i in used],
            self.bucket[m],
            key_idx.reshape(-1).astype(np.int64),
            self.sums[m],
            self.maxes[m],
            self.hll[m],
        )


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
        self.pending = Partial(n_sum, n_max, hll_m)
        self.version = 0  # bumped whenever the key set changes

    def __len__(self) -> int:
        return len(self.keys)

    # --- input ---
    def add(self, partial: Partial) -> None:
        """Add open aggregates (callers drop rows of closed buckets first: they are late)."""
        self.pending = self.pending.merge(partial) if len(self.pending) else partial

    def pending_min_bucket(self) -> int | None:
        return int(self.pending.bucket.min()) if len(self.pending) else None

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
        now, self.pending = self.pending.split(b + 1)
        n_new = self._ensure_keys(now)
        rows = np.fromiter((self.index[k] for k in now.keys), dtype=np.int64, count=len(now.keys))
        rows = rows[now.key_idx] if len(now) else _empty_i64(0)
        k = len(self.keys)
        new_sum = _empty_i64(k, self.n_sum)
        np.add.at(new_sum, rows, now.sums)
        slot = b % self.ring_buckets
        for h, hb in enumerate(self.horizons_buckets):
            self.horizon_sum[h] += new_sum - self.ring_sum[:, (b - hb) % self.ring_buckets]
        self.ring_sum[:, slot] = new_sum
        new_max = _empty_i64(k, self.n_max)
        np.maximum.at(new_max, rows, now.maxes)
        self.ring_max[:, slot] = new_max
        new_hll = np.zeros((k, self.hll_m), dtype=np.uint8)
        np.maximum.at(new_hll, rows, now.hll)
        self.ring_hll[:, slot] = new_hll
        self.last_bucket[rows] = b
        self.next_bucket = b + 1
        return n_new

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

    def _ensure_keys(self, now: Partial) -> int:
        used = np.unique(now.key_idx) if len(now) else _empty_i64(0)
        new = sorted({now.keys[int(i)] for i in used} - self.index.keys())
        b = self.next_bucket if self.next_bucket is not None else 0
        self._grow(new, first=b, last=b)
        return len(new)

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

    def window_max(self, n_buckets: int) -> I64:
        out: I64 = self.ring_max[:, self.recent(n_buckets)].max(axis=1, initial=0)
        return out

    def window_hll(self, n_buckets: int) -> U8:
        out: U8 = self.ring_hll[:, self.recent(n_buckets)].max(axis=1, initial=0)
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
        out.pending = self.pending.merge(other.pending)
        return out
