"""Several sources (a worker's partitions) feeding one governor.

The watermark is the minimum over active sources, so a lagging source keeps its events; an idle
source stops holding the others back; and once every source is registered, how the sources were
interleaved does not change a single output.
"""

from __future__ import annotations

import numpy as np
import pytest
from synth import EPOCH_MS, Scenario, generate

from detectors.governor import Governor, GovernorOutput
from schemas.columns import EventColumns

LATENESS_MS = Governor().config.allowed_lateness_ms


def _by_source(events: EventColumns) -> dict[int, EventColumns]:
    """Events split by endpoint (the partition key), each source in arrival order."""
    arrival = events.ts_ms + events.latency_ms
    events = events.take(np.argsort(arrival, kind="stable"))
    names = sorted(set(events.endpoint.tolist()))
    return {i: events.take(np.flatnonzero(events.endpoint == n)) for i, n in enumerate(names)}


def _interleaved(
    sources: dict[int, EventColumns], seed: int
) -> tuple[list[dict[str, object]], list[dict[str, object]], list[str], int]:
    """Feed random-sized chunks of the sources in a random order (each source in its own order)."""
    rng = np.random.default_rng(seed)
    gov = Governor()
    for s in sources:
        gov.expect(s)
    pos = dict.fromkeys(sources, 0)
    features: list[dict[str, object]] = []
    scores: list[dict[str, object]] = []
    directives: list[str] = []
    late = 0

    def take(out: GovernorOutput) -> None:
        features.extend(f.to_json() for f in out.features)
        scores.extend(s.to_json() for s in out.scores)
        directives.extend(d.id for d in out.directives)

    while any(pos[s] < len(ev) for s, ev in sources.items()):
        s = int(rng.choice([s for s, ev in sources.items() if pos[s] < len(ev)]))
        hi = min(len(sources[s]), pos[s] + int(rng.integers(1, 3_000)))
        late += gov.ingest(sources[s].take(np.arange(pos[s], hi)), source=s).late
        pos[s] = hi
        out = gov.advance()
        late += out.late_events
        take(out)
    return features, scores, directives, late


@pytest.mark.parametrize("pattern", ["saturation", "contention"])
def test_interleaving_of_registered_sources_changes_nothing(pattern: str) -> None:
    events = generate(Scenario(pattern=pattern, rate_per_s=300.0, duration_ms=16_000,
                               onset_ms=12_000, seed=4))  # fmt: skip
    sources = _by_source(events)
    assert len(sources) == 3
    first = _interleaved(sources, seed=0)
    features, scores, directives, _ = first
    assert features and scores and directives, "the pattern must produce every kind of output"
    for seed in (1, 2):
        assert _interleaved(sources, seed) == first


def _steady(start_ms: int, end_ms: int, endpoint: str, every_ms: int = 10) -> EventColumns:
    ts = np.arange(start_ms, end_ms, every_ms, dtype=np.int64)
    n = len(ts)
    return EventColumns.from_arrays({
        "ts_ms": ts, "latency_ms": np.zeros(n, dtype=np.int64),
        "endpoint": np.full(n, endpoint, dtype=object), "tenant": np.full(n, "t", dtype=object),
    })  # fmt: skip


def test_a_lagging_source_holds_the_watermark_and_keeps_its_events() -> None:
    gov = Governor()
    gov.ingest(_steady(EPOCH_MS + 10_000, EPOCH_MS + 12_000, "a"), source=0)
    gov.expect(1)  # source 1 is behind: nothing may close before it speaks
    assert gov.advance().features == [] and gov.watermark_ms is None
    stats = gov.ingest(_steady(EPOCH_MS, EPOCH_MS + 2_000, "b"), source=1)
    assert stats.late == 0
    gov.advance()
    assert gov.watermark_ms == EPOCH_MS + 2_000 - 10 - LATENESS_MS  # the laggard's, not 12 s


def test_without_registration_a_latecomer_source_is_late() -> None:
    gov = Governor()
    gov.ingest(_steady(EPOCH_MS + 10_000, EPOCH_MS + 12_000, "a"), source=0)
    gov.advance()
    stats = gov.ingest(_steady(EPOCH_MS, EPOCH_MS + 2_000, "b"), source=1)
    assert stats.late == stats.accepted + stats.late > 0


def test_an_idle_source_stops_holding_the_others_back_until_it_speaks() -> None:
    gov = Governor()
    gov.ingest(_steady(EPOCH_MS, EPOCH_MS + 1_000, "b"), source=1)
    gov.ingest(_steady(EPOCH_MS, EPOCH_MS + 5_000, "a"), source=0)
    gov.advance()
    assert gov.watermark_ms == EPOCH_MS + 990 - LATENESS_MS
    gov.set_idle(1)
    gov.advance()
    assert gov.watermark_ms == EPOCH_MS + 4_990 - LATENESS_MS
    # it speaks again with old events: late (its bucket closed while it was idle)
    stats = gov.ingest(_steady(EPOCH_MS + 2_000, EPOCH_MS + 2_100, "b"), source=1)
    assert stats.late == 10
    # and it counts again: the watermark waits for it
    gov.ingest(_steady(EPOCH_MS + 5_000, EPOCH_MS + 9_000, "a"), source=0)
    gov.advance()
    assert gov.watermark_ms == EPOCH_MS + 4_990 - LATENESS_MS


def test_every_source_idle_closes_nothing_by_itself() -> None:
    gov = Governor()
    gov.ingest(_steady(EPOCH_MS, EPOCH_MS + 1_000, "a"), source=0)
    gov.advance()
    wm = gov.watermark_ms
    gov.set_idle(0)
    gov.advance()
    assert gov.watermark_ms == wm  # only an explicit (wall-clock) watermark moves it now
    gov.advance(EPOCH_MS + 3_000)
    assert gov.watermark_ms == EPOCH_MS + 3_000


def test_sources_bench_reports_both_layouts() -> None:
    """``flyball bench core``'s comparison runs and reports what it measured (no timing
    assertion: speed targets live in the benchmark's output, not in unit tests)."""
    from detectors.bench import run_sources_bench

    result = run_sources_bench(n_events=20_000, partitions=3, events_per_s=4_000)
    assert result["events"] == 20_000 and result["partitions"] == 3
    for key in ("partition_governors_events_per_s", "worker_governor_events_per_s"):
        assert result[key] > 0
    assert result["worker_vs_partition_governors"] == pytest.approx(
        result["worker_governor_events_per_s"] / result["partition_governors_events_per_s"]
    )
