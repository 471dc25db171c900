"""Load-shape scorer and the ``flyball detect`` CSV command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.cli_detect import parse_timestamp_ms, run_detect
from detectors.loadshape import LoadShapeScorer, score_series


def series(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = 1_700_000_000_000 + np.arange(300, dtype=np.int64) * 1_000
    v = 100 + rng.normal(0, 3, 300)
    v[200:210] += 60  # a spike
    return ts, v


def test_spike_scores_high_and_normal_low() -> None:
    ts, v = series()
    s = score_series(ts, v)
    assert ((s >= 0) & (s <= 1)).all()
    assert s[200] > 0.9
    assert s[30:200].max() < 0.5
    assert not s[:20].any()  # warm-up


def test_baseline_protected_during_the_spike() -> None:
    ts, v = series()
    s = score_series(ts, v)
    assert s[200:210].min() > 0.9  # still anomalous at the end: it did not learn the spike


def test_update_many_equals_loop_and_batches() -> None:
    ts, v = series(1)
    a = LoadShapeScorer()
    many = a.update_many(ts[:150], v[:150])
    b = LoadShapeScorer()
    loop = np.array([b.score_one(int(t), float(x)) for t, x in zip(ts[:150], v[:150], strict=True)])
    np.testing.assert_array_equal(many, loop)
    rest = a.update_many(ts[150:], v[150:])  # the same scorer, a second batch
    whole = LoadShapeScorer().update_many(ts, v)
    np.testing.assert_array_equal(np.concatenate([many, rest]), whole)


def test_timestamps_epoch_ms_and_iso() -> None:
    assert parse_timestamp_ms("1700000000000") == 1_700_000_000_000
    assert parse_timestamp_ms("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_timestamp_ms("2023-11-14T22:13:20.5+00:00") == 1_700_000_000_500
    with pytest.raises(ValueError):
        parse_timestamp_ms("yesterday")


def test_cli_scores_and_reports_bad_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ts, v = series()
    lines = ["timestamp,value"] + [f"{t},{x:.3f}" for t, x in zip(ts, v, strict=True)]
    lines[5] = "not-a-time,1"
    lines[7] = f"{ts[6]},abc"
    lines[9] = "2023-11-14T22:13:20Z,100"
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text("\n".join(lines) + "\n")
    assert run_detect(str(src), str(dst)) == 0
    err = capsys.readouterr().err
    assert "line 6" in err and "line 8" in err and "2 bad rows" in err
    out = dst.read_text().splitlines()
    assert out[0] == "timestamp,value,anomaly_score"
    assert len(out) == 1 + 300 - 2
    assert out[7].startswith("2023-11-14T22:13:20Z,100,")  # two bad rows skipped before it


def test_cli_missing_file_and_bad_header(tmp_path: Path) -> None:
    assert run_detect(str(tmp_path / "nope.csv"), str(tmp_path / "o.csv")) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("time,val\n1,2\n")
    assert run_detect(str(bad), str(tmp_path / "o.csv")) == 2
