"""The loop benchmark runs end to end (signed directives from a real worker reach a real gateway):
a benchmark that silently stops measuring is a defect. No timing is asserted here; the latency
target lives in the benchmark's own output."""

from __future__ import annotations

from pathlib import Path

import pytest

from flyball.settings import load_settings
from streams.bench_loop import loop_bench


def test_every_storm_onset_reaches_the_gateway_as_a_verified_directive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray flyball.toml
    monkeypatch.setattr("streams.bench_loop.ONSETS", 3)  # a short run: this checks it works
    result = loop_bench(load_settings(data_dir=tmp_path), calm_s=2.0)
    assert result["onsets"] == 3
    assert result["missed"] == 0, result
