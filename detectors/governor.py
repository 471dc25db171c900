"""The governor: events in, features, scores and directives out, in event time.

``ingest`` aggregates a batch (vectorized) into open buckets; ``advance`` closes every bucket
whose end is at or before the watermark and, at each closed boundary in order, computes features,
scores every detector and runs the policy. Nothing reads a clock, so live, replayed and simulated
runs of the same events give the same output, however the events were split into batches (rows,
baselines and decisions depend only on closed buckets).

**Sources.** Events arrive from one or more *sources* (a worker's gateways within each Kafka
partition; everything else uses the default source 0). Each source is in log order; sources are not
ordered against each other. The watermark is the minimum over the active sources of their newest
event time minus the allowed lateness, so a source that lags behind another does not see its events
turned late by the other's progress. ``expect(source)`` registers a source before its first event
(it holds the watermark back until it speaks or is marked idle); ``set_idle(source)`` excludes a
source that has nothing to say (Flink's idle sources) until its next event. When every source is
registered before any is fed and none is idle, each event's lateness depends only on its own
source's order, so the outputs do not depend on how the sources were interleaved.

Outputs per boundary ``t``:

- features: every key with traffic, every horizon, when ``t`` is a multiple of
  ``feature_every_ms`` (1 s); ``values["level"]`` is 0 endpoint, 1 endpoint x tenant, 2 tenant;
- scores: each detector on its key kind where the score is > 0, or the episode entered or ended;
- directives: from the policy (enter, escalate, refresh, release).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors import actions
from detectors.aggregate import aggregate_both, event_time_ms
from detectors.capacity import CapacityTracker
from detectors.config import GovernorConfig
from detectors.evaluate import LEVELS, KeyIndex, detector_inputs, fast_sums, feature_records
from detectors.keybudget import fold_new_keys
from detectors.layout import HLL_M, KIND_ENDPOINT, N_MAX, N_SUM
from detectors.policy import Planned, Policy
from detectors.scores import RULES, Detector, Rule, Scored
from detectors.windows import Key, WindowStore
from schemas.columns import EventColumns
from schemas.directive import Directive
from schemas.records import FeatureRecord, ScoreRecord

__all__ = ["Governor", "GovernorConfig", "GovernorOutput", "IngestStats"]

@dataclass(frozen=True, slots=True)
class IngestStats:
    accepted: int
    late: int
    folded: int = 0  # accepted events whose endpoint or tenant was folded into ``~other``


@dataclass(frozen=True)
class GovernorOutput:
    features: list[FeatureRecord] = field(default_factory=list)
    scores: list[ScoreRecord] = field(default_factory=list)
    directives: list[Directive] = field(default_factory=list)
    late_events: int = 0


class Governor:
    def __init__(self, config: GovernorConfig | None = None) -> None:
        c = self.config = config if config is not None else GovernorConfig()
        self._hb = tuple(c.buckets(h) for h in c.horizons_ms)
        self._store = WindowStore(self._hb[-1], self._hb, N_SUM, N_MAX, HLL_M)
        gw_b = self._hb[min(1, len(self._hb) - 1)]  # gateway shares over the mid horizon
        self._gw = WindowStore(gw_b, (gw_b,), 1)
        self._detectors: dict[str, Detector[Any]] = {
            r.name: r.detector(getattr(c, r.config_field)) for r in RULES
        }
        # the rules that act, in registry order; the others only record their scores
        self._acting: tuple[Rule, ...] = tuple(
            r for r in RULES if r.plan is not None and r.name not in c.disabled
        )
        self._recording = tuple(r for r in RULES if r not in self._acting)
        self._plans = {r.name: r.plan for r in self._acting if r.plan is not None}
        self._capacity = CapacityTracker(c.capacity, c.bucket_ms)
        self._policy = Policy(c.policy)
        self._index = KeyIndex.build([], -1)
        # source -> its newest event time (None: expected, no event yet); idle ones excluded
        self._source_max_ms: dict[int, int | None] = {}
        self._idle_sources: set[int] = set()
        self._watermark_ms: int | None = None
        self._late = 0
        self.folded_events = 0  # events folded into ``~other`` keys (the key budget was full)

    # --- input ---
    def expect(self, source: int) -> None:
        """Register ``source`` before its first event: the watermark waits for it (or for
        ``set_idle``)."""
        self._source_max_ms.setdefault(source, None)

    def set_idle(self, source: int, idle: bool = True) -> None:
        """Exclude ``source`` from the watermark until its next event (or include it again)."""
        if idle:
            self._source_max_ms.setdefault(source, None)
            self._idle_sources.add(source)
        else:
            self._idle_sources.discard(source)

    def forget(self, source: int) -> None:
        """Drop ``source`` (a gateway gone for good): it no longer holds the watermark, and its
        next event, if any, starts it again."""
        self._source_max_ms.pop(source, None)
        self._idle_sources.discard(source)

    def source_newest_ms(self, source: int) -> int | None:
        """The newest event time of ``source`` (None: unknown, or no event yet)."""
        return self._source_max_ms.get(source)

    @property
    def sources(self) -> dict[int, int | None]:
        """Source -> its newest event time (None before its first event)."""
        return dict(self._source_max_ms)

    def ingest(self, events: EventColumns, source: int = 0) -> IngestStats:
        """Aggregate a batch of one source, in its log order. Events in already closed buckets
        are late: counted, not used."""
        n = len(events)
        if n == 0:
            return IngestStats(0, 0)
        self._idle_sources.discard(source)
        src_max = self._source_max_ms.get(source)
        c = self.config
        t = event_time_ms(events, c.event_time)
        bucket = t // c.bucket_ms
        # Lateness is a function of log order alone, not of how the log was cut into batches:
        # an event is late when the events before it in its source (this batch included) have
        # already moved the watermark past its bucket, exactly as if ``advance`` ran after every
        # event; or when its bucket is already closed.
        first = t[0] if src_max is None else src_max
        before = np.maximum.accumulate(np.concatenate(([first], t[:-1])))
        closed = (before - c.allowed_lateness_ms) // c.bucket_ms
        nb = self._store.next_bucket
        if nb is not None:
            np.maximum(closed, nb, out=closed)
        late = bucket < closed
        n_late = int(late.sum())
        if n_late:
            keep = ~late
            events, t, bucket = events.take(keep), t[keep], bucket[keep]
        folded = 0
        if len(events):
            f = fold_new_keys(events, self._store.keys, c.keys)
            events, folded = f.events, f.rows
            self.folded_events += folded
            main, gateways = aggregate_both(events, bucket, f.keys)
            self._store.add(main)
            self._gw.add(gateways)
            top = int(t.max())
            self._source_max_ms[source] = top if src_max is None else max(top, src_max)
        self._late += n_late
        return IngestStats(n - n_late, n_late, folded)

    @property
    def watermark_ms(self) -> int | None:
        return self._watermark_ms

    # --- time ---
    def advance(self, watermark_ms: int | None = None) -> GovernorOutput:
        """Close every bucket ending at or before the watermark (never moves backwards).

        Without an argument the watermark is the sources' (see the module docstring); nothing
        closes while an active source has not spoken yet, or when every source is idle.
        """
        c = self.config
        if watermark_ms is None:
            newest = [m for s, m in self._source_max_ms.items() if s not in self._idle_sources]
            if not newest or None in newest:
                return self._flush_late(GovernorOutput())
            watermark_ms = min(m for m in newest if m is not None) - c.allowed_lateness_ms
        if self._watermark_ms is not None:
            watermark_ms = max(watermark_ms, self._watermark_ms)
        self._watermark_ms = watermark_ms
        target = watermark_ms // c.bucket_ms
        out = GovernorOutput()
        st = self._store
        if st.next_bucket is None:
            first = st.pending_min_bucket()
            if first is None or first >= target:
                return self._flush_late(out)
            st.next_bucket = self._gw.next_bucket = first
        while st.next_bucket is not None and st.next_bucket < target:
            if st.is_idle() and not self._policy.active():
                pm = st.pending_min_bucket()
                jump = target if pm is None else min(target, pm)
                if jump > st.next_bucket:
                    st.skip_to(jump)
                    self._gw.skip_to(jump)
                    continue
            self._close_one(out)
        return self._flush_late(out)

    def _flush_late(self, out: GovernorOutput) -> GovernorOutput:
        late, self._late = self._late, 0
        return GovernorOutput(out.features, out.scores, out.directives, late)

    def _close_one(self, out: GovernorOutput) -> None:
        st, c = self._store, self.config
        st.close_next()
        self._gw.close_next()
        drop = st.evictable()
        if drop.any():
            keep = st.evict(drop)
            for det in self._detectors.values():
                det.keep(keep[: det.n_keys])
            self._capacity.keep(keep[: len(self._capacity)])
        gw_drop = self._gw.evictable()
        if gw_drop.any():
            self._gw.evict(gw_drop)
        if not len(st):
            return
        assert st.next_bucket is not None
        now_ms = st.next_bucket * c.bucket_ms
        if self._index.version != st.version:
            self._index = KeyIndex.build(st.keys, st.version)
        fast_b = c.buckets(c.latency_fast_ms)
        fast = fast_sums(st, fast_b)
        feats = detector_inputs(st, self._index, self._hb, c.bucket_ms)
        feats = self._capacity.update(
            feats,
            st.horizon_sum[0],
            fast,
            st.horizon_sum[min(1, len(self._hb) - 1)],
            st.horizon_sum[-1],
            self._index.mask(KIND_ENDPOINT),
        )
        scored = {name: det.update_many(feats) for name, det in self._detectors.items()}
        self._decide(now_ms, feats, scored, out)
        if now_ms % c.feature_every_ms == 0:
            out.features.extend(feature_records(st, self._index, self._hb, c.bucket_ms, now_ms))

    def _decide(
        self,
        now_ms: int,
        feats: dict[str, np.ndarray],
        scored: dict[str, Scored],
        out: GovernorOutput,
    ) -> None:
        st, idx = self._store, self._index
        # a pair reads its endpoint's organic score (``endpoint_row``: own row for other keys)
        calm = scored["organic_growth"].score[idx.endpoint_row] < self.config.organic_guard
        ctx = actions.EvalContext(
            st.keys,
            feats,
            st.horizon_sum[0],
            idx.endpoint_row,
            idx.pairs_of_tenant,
            self._gateway_counts,
            scored,
        )

        def build(det: str, row: int, key: Key, onset_ms: int, t_ms: int) -> list[Planned]:
            return self._plans[det](ctx, self.config, row, key, t_ms - onset_ms)

        for rule in self._acting:
            s = scored[rule.name]
            of_kind = idx.mask(rule.kind)
            allowed = of_kind & calm if rule.guarded else of_kind
            # the long tail's ``~other`` keys are scored and recorded, never governed: no
            # request carries that name, so a directive there would constrain nobody
            allowed = allowed & ~idx.folded
            for name in rule.requires:  # on the key's endpoint (pairs: their endpoint's row)
                required = scored[name].score[idx.endpoint_row]
                allowed = allowed & (required >= self.config.policy.enter)
            directives, moved = self._policy.step(
                now_ms, rule.name, st.keys, s.score, allowed, build, s.evidence_at
            )
            out.directives.extend(directives)
            self._score_records(
                now_ms, rule.name, s, of_kind, moved.entered + moved.released, out
            )
        for rule in self._recording:  # scored and recorded as evidence, not acting
            mask = np.zeros(len(st), dtype=bool)
            for kind in rule.record_kinds:
                mask |= idx.mask(kind)
            self._score_records(now_ms, rule.name, scored[rule.name], mask, [], out)

    def _score_records(
        self,
        now_ms: int,
        det: str,
        s: Scored,
        mask: np.ndarray,
        changed: list[Key],
        out: GovernorOutput,
    ) -> None:
        st = self._store
        rows = set(np.flatnonzero(mask & (s.score > 0)).tolist())
        rows |= {st.index[k] for k in changed if k in st.index}
        for r in sorted(rows):
            key = st.keys[r]
            ev = s.evidence_at(r)
            ev["level"] = LEVELS[key[0]]
            out.scores.append(ScoreRecord(now_ms, det, key[1], key[2], float(s.score[r]), ev))

    def _gateway_counts(self, endpoint: str, tenant: str) -> dict[str, int]:
        gw = self._gw
        counts = gw.horizon_sum[0][:, 0]
        return {
            k[2]: int(counts[i])
            for i, k in enumerate(gw.keys)
            if k[0] == endpoint and k[1] == tenant and counts[i] > 0
        }
