"""The governor as a whole: batch splits, late events, idle gaps, configuration."""

from __future__ import annotations

import pytest
from synth import Scenario, feed, generate

from detectors.config import GovernorConfig
from detectors.errors import ConfigError
from detectors.governor import Governor, GovernorOutput
from schemas.columns import EventColumns

SC = Scenario(pattern="saturation", rate_per_s=200.0, duration_ms=14_000, onset_ms=9_000, seed=3)


def flatten(outs: list[GovernorOutput]) -> tuple[list[object], list[object], list[object]]:
    return (
        [f for o in outs for f in o.features],
        [s for o in outs for s in o.scores],
        [d for o in outs for d in o.directives],
    )


@pytest.fixture(scope="module")
def events() -> EventColumns:
    return generate(SC)


@pytest.fixture(scope="module")
def reference(events: EventColumns) -> tuple[list[object], list[object], list[object]]:
    return flatten(feed(Governor(), events, step_ms=100))


def test_batch_boundaries_do_not_change_the_output(
    events: EventColumns, reference: tuple[list[object], ...]
) -> None:
    got = flatten(feed(Governor(), events, step_ms=37))
    assert got == reference
    assert reference[2], "the scenario should produce directives"


def test_one_big_batch_equals_streaming(
    events: EventColumns, reference: tuple[list[object], ...]
) -> None:
    gov = Governor()
    gov.ingest(events)
    done = events.ts_ms + events.latency_ms
    out = gov.advance(int(done.max()) - GovernorConfig().allowed_lateness_ms)
    assert flatten([out]) == reference


def test_late_events_are_counted_and_dropped() -> None:
    gov = Governor()
    ev = EventColumns.from_arrays({"ts_ms": [10_000, 10_050], "endpoint": ["a", "a"]})
    assert gov.ingest(ev).late == 0
    gov.advance(11_000)
    late = EventColumns.from_arrays({"ts_ms": [10_500, 11_200], "endpoint": ["a", "a"]})
    stats = gov.ingest(late)
    assert (stats.accepted, stats.late) == (1, 1)
    assert gov.advance(11_100).late_events == 1


def test_watermark_never_moves_backwards() -> None:
    gov = Governor()
    gov.ingest(EventColumns.from_arrays({"ts_ms": [5_000], "endpoint": ["a"]}))
    gov.advance(6_000)
    gov.advance(1_000)
    assert gov.watermark_ms == 6_000


def test_idle_gap_is_skipped_and_keys_evicted() -> None:
    gov = Governor()
    gov.ingest(EventColumns.from_arrays({"ts_ms": [1_000, 1_200], "endpoint": ["a", "a"]}))
    gov.advance(2_000)
    out = gov.advance(10_000_000)  # ~3 hours of event time: must not close 100k buckets
    assert out.directives == []
    assert len(gov._store) == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"bucket_ms": 0}, "bucket_ms"),
        ({"horizons_ms": (1_000, 150)}, "horizons_ms"),
        ({"horizons_ms": (1_050,)}, "horizons_ms"),
        ({"allowed_lateness_ms": -1}, "allowed_lateness_ms"),
        ({"event_time": "wall"}, "event_time"),
        ({"feature_every_ms": 150}, "feature_every_ms"),
    ],
)
def test_config_is_validated(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        GovernorConfig(**kwargs)  # type: ignore[arg-type]


def test_feature_records_cover_every_horizon_and_key_level(
    reference: tuple[list[object], ...],
) -> None:
    feats = reference[0]
    horizons = {f.horizon_ms for f in feats}  # type: ignore[attr-defined]
    assert horizons == {1_000, 10_000, 60_000}
    levels = {f.values["level"] for f in feats}  # type: ignore[attr-defined]
    assert levels == {0.0, 1.0, 2.0}
    sample = feats[-1].values  # type: ignore[attr-defined]
    for name in (
        "latency_p95_ms",
        "distinct_agents",
        "retry_coherence",
        "in_flight",
        "amplification",
        "fanout",
        "tokens_per_intent",
        "depth_max",
    ):
        assert name in sample


def test_disabled_names_acting_rules_only() -> None:
    assert GovernorConfig(disabled=("fanout",)).disabled == ("fanout",)
    with pytest.raises(ConfigError, match="unknown rules"):
        GovernorConfig(disabled=("saturation",))  # retired, not a rule any more
    with pytest.raises(ConfigError, match="unknown rules"):
        GovernorConfig(disabled=("organic_growth",))  # informs the others; it never acts
