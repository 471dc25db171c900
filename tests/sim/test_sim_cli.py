"""``run_sim``: the function behind ``flyball sim``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.cli_sim import run_sim
from sim.scenario import SCENARIO_DIR


def test_single_run_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_sim("retry-storm", "none", False, True, None, 3) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["policy"] == "none" and m["seed"] == 3
    assert len(m["timeline"]["goodput"]) == 90
    assert run_sim(str(SCENARIO_DIR / "retry-storm.toml"), "drop-expired", False, False, None,
                   None) == 0
    m = json.loads(capsys.readouterr().out)
    assert "timeline" not in m and m["seed"] == 7


def test_compare_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp.png"
    assert run_sim("retry-storm", None, True, False, str(out), None) == 0
    text = capsys.readouterr().out
    for name in ("none", "retry-budget", "client-throttle", "goodput ratio"):
        assert name in text
    assert out.stat().st_size > 10_000
    assert run_sim("retry-storm", None, True, True, None, None) == 0
    results = json.loads(capsys.readouterr().out)
    assert {"none", "backoff-jitter", "drop-expired"} <= {m["policy"] for m in results}
    assert len({m["seed"] for m in results}) == 1


def test_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_sim("no-such", "none", False, False, None, None) == 2
    assert "no-such" in capsys.readouterr().err
    assert run_sim("retry-storm", "wishful", False, False, None, None) == 2
    assert "unknown policy 'wishful'" in capsys.readouterr().err
