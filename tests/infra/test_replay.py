"""``flyball replay``: the governor re-run over history gives the same directives, every time,
as feeding the core directly; a what-if configuration changes them; episodes match live ones."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from detectors.config import GovernorConfig
from detectors.config_io import load_governor_config
from flyball.errors import ConfigError
from flyball.replay import parse_time_ms, replay_events, run_replay
from flyball.settings import Settings
from infra.history import HistoryStore
from schemas import jsoncodec
from schemas.columns import EventColumns
from schemas.directive import Directive

sys.path.insert(0, str(Path(__file__).parents[1] / "detectors"))
from synth import EPOCH_MS, Scenario, generate


def _recent_saturation() -> EventColumns:
    """The synthetic saturation, moved to the last minutes (history's TTL drops old rows)."""
    events = generate(
        Scenario(pattern="saturation", rate_per_s=200.0, duration_ms=20_000, onset_ms=15_000)
    )
    shift = (int(time.time() * 1000) - 60_000 - EPOCH_MS) // 1000 * 1000
    cols = events.as_dict()
    cols["ts_ms"] = cols["ts_ms"] + shift
    cols["event_id"] = np.array([f"e{i}" for i in range(len(events))], dtype=object)
    return EventColumns(**cols)


def _run_json(
    settings: Settings, events: EventColumns, capsys: pytest.CaptureFixture[str], **kw: object
) -> dict[str, object]:
    lo, hi = int(events.ts_ms.min()), int(events.ts_ms.max()) + 1
    assert (
        run_replay(
            settings,
            str(lo),
            str(hi),
            None,
            kw.get("config"),  # type: ignore[arg-type]
            bool(kw.get("compare")),
            True,
        )
        == 0
    )
    return jsoncodec.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_replay_from_history_matches_the_core(
    settings: Settings, store: HistoryStore, capsys: pytest.CaptureFixture[str]
) -> None:
    events = _recent_saturation()
    store.insert_events(events)
    store.insert_events(events.take(slice(0, 500)))  # a redelivery: deduped, not replayed twice
    direct = replay_events(events, GovernorConfig())
    hi = int(events.ts_ms.max()) + 1
    first_issue: dict[str, int] = {}
    for d in direct.directives:
        if d.action.type != "release":
            first_issue.setdefault(d.id, d.issued_ms)
    episodes = {i for i, t in first_issue.items() if t < hi}  # episodes started in the range
    assert any(d.reason.detector == "overload" for d in direct.directives)

    first = _run_json(settings, events, capsys)
    second = _run_json(settings, events, capsys)
    assert first == second
    assert first["events"] == len(events)
    assert {e["id"] for e in first["episodes"]} == episodes  # type: ignore[union-attr]


def test_replay_compare_and_what_if(
    settings: Settings, store: HistoryStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = _recent_saturation()
    store.insert_events(events)
    live = replay_events(events, GovernorConfig()).directives
    store.insert_directives(live)
    report = _run_json(settings, events, capsys, compare=True)
    compare = report["compare"]
    assert compare["only_recorded"] == [] and compare["only_replayed"] == []  # type: ignore[index]
    assert compare["both"] == compare["recorded"] > 0  # type: ignore[index]

    what_if = tmp_path / "what-if.toml"
    what_if.write_text("[governor.overload]\nhold_share = 0.5\n")  # wait for a slot half as long
    changed = replay_events(events, load_governor_config(what_if)).directives

    def holds(ds: list[Directive]) -> list[int]:
        return [d.action.max_delay_ms for d in ds
                if d.reason.detector == "overload" and d.action.type == "limit"]

    assert holds(changed) and max(holds(changed)) < min(h for h in holds(live) if h > 0)


def test_bad_replay_arguments(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a time"):
        parse_time_ms("yesterday")
    with pytest.raises(ConfigError, match="after"):
        run_replay(settings, "2000", "1000", None, None, False, True)
    bad = tmp_path / "bad.toml"
    bad.write_text("[governor.policy]\nentre = 0.5\n")
    with pytest.raises(ConfigError, match=r"governor\.policy\.entre"):
        load_governor_config(bad)
    assert parse_time_ms("2026-11-23T10:00:00.250") == parse_time_ms("2026-11-23T10:00:00.250Z")
    assert parse_time_ms("1700000000123") == 1_700_000_000_123
