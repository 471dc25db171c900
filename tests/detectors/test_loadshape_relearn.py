"""Load-shape scorer: a persistent level shift becomes the new normal in bounded time (issue 9)."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.errors import ConfigError
from detectors.layout import F64, I64
from detectors.loadshape import LoadShapeConfig, LoadShapeScorer, score_series
from sim.trace import load_trace

N = LoadShapeConfig().relearn_points
ONSET = 300


def step_series(seed: int = 0) -> tuple[I64, F64]:
    rng = np.random.default_rng(seed)
    ts = 1_700_000_000_000 + np.arange(1000, dtype=np.int64) * 1_000
    v = 10.0 + rng.normal(0.0, 1.0, 1000)
    v[ONSET:] += 20.0  # level 10 -> 30, for good
    return ts, v


def test_default_bound_is_documented_and_validated() -> None:
    assert N == 30
    assert LoadShapeConfig(relearn_points=0).relearn_points == 0  # 0 = never re-learn
    for bad in (-1, 1):
        with pytest.raises(ConfigError):
            LoadShapeConfig(relearn_points=bad)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_level_shift_is_flagged_at_onset_then_adopted_within_the_bound(seed: int) -> None:
    ts, v = step_series(seed)
    s = score_series(ts, v)
    assert s[30:ONSET].max() < 0.5  # the old level is normal
    assert s[ONSET] >= 0.5 and s[ONSET : ONSET + N].min() >= 0.5  # flagged from the onset
    assert s[ONSET + N :].max() < 0.5  # ... and the new level is normal after N points
    assert int((s[30:] >= 0.5).sum()) == N  # sparse: the onset run, nothing else


def test_relearning_does_not_depend_on_batch_boundaries_mid_episode() -> None:
    ts, v = step_series(3)
    whole = score_series(ts, v)
    cut = ONSET + N // 2  # inside the anomalous run, before adoption
    a = LoadShapeScorer()
    first = a.update_many(ts[:cut], v[:cut])
    rest = a.update_many(ts[cut:], v[cut:])
    np.testing.assert_array_equal(np.concatenate([first, rest]), whole)
    assert rest[ONSET + N - cut :].max() < 0.5


def test_short_spikes_stay_protected_before_and_after_a_shift() -> None:
    ts, v = step_series(4)
    spike = N - 1  # one point short of adoption
    v[150 : 150 + spike] += 15.0  # on the old level
    v[600 : 600 + spike] += 15.0  # on the new (adopted) level
    s = score_series(ts, v)
    assert s[150 : 150 + spike].min() > 0.9  # high for the whole spike
    assert s[150 + spike : ONSET].max() < 0.5  # the baseline did not learn the spike
    assert s[ONSET + N : 600].max() < 0.5  # the shift was adopted
    assert s[600 : 600 + spike].min() > 0.9
    assert s[600 + spike :].max() < 0.5  # not contaminated: the level after the spike is normal


def test_relearn_disabled_keeps_permanent_protection() -> None:
    ts, v = step_series(5)
    s = score_series(ts, v, LoadShapeConfig(relearn_points=0))
    assert s[ONSET:].min() > 0.9  # the old behaviour, on request


def per_second_rates(name: str) -> tuple[I64, F64]:
    off_ms = load_trace(name).offset_ms
    counts = np.bincount(off_ms // 1_000).astype(np.float64)
    return np.arange(len(counts), dtype=np.int64) * 1_000, counts


def longest_run(flags: np.ndarray) -> int:
    best = cur = 0
    for f in flags.tolist():
        cur = cur + 1 if f else 0
        best = max(best, cur)
    return best


@pytest.mark.parametrize(("name", "max_share"), [("azure-code", 0.13), ("azure-conv", 0.005)])
def test_azure_arrival_rates_are_not_stuck_at_one(name: str, max_share: float) -> None:
    # Per-second arrival counts. With permanent protection azure-code scored 893 of 3436 points
    # >= 0.5 (26.0 %), 883 at 1.0 (25.7 %): it idles at 0 arrivals/s, the baseline learns 0 +- 0,
    # and after that every busy second scored 1.0. Re-learning must at least halve that. azure-conv
    # (steady, 3 of 3502 points >= 0.5 before) guards against new false flags.
    ts, v = per_second_rates(name)
    s = score_series(ts, v)
    assert len(s) > 3000
    assert (s >= 0.5).mean() < max_share
    assert (s >= 1.0).mean() < max_share
    assert longest_run(s >= 0.5) <= N  # was 37 on azure-code: a run that long is adopted
