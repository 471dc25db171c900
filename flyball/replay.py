"""``flyball replay``: re-run the governor over a time range of the history, deterministically.

The events of ``[from, to)`` are read from ClickHouse (through ``flyball up`` when it runs), put in
a canonical order (event time, then event id) and fed to the pure core in fixed slices of event
time, so the same history and the same configuration always give the same directives. (The live
worker decides lateness by the log's arrival order; history keeps event time, not that order, so a
replay counts no event as late. Where live traffic had late events, replay can differ from live
by exactly those events: ``--compare`` shows it.) With
``--governor-config`` an SRE asks "what if": the same incident under other thresholds. With
``--compare`` the replayed directive episodes are matched by id against the ones recorded live.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from detectors.config import GovernorConfig
from detectors.config_io import load_governor_config
from detectors.governor import Governor
from flyball.errors import ConfigError
from flyball.settings import Settings
from schemas import jsoncodec
from schemas.columns import APPLIED_CODES, FIELD_NAMES, STATUS_CODES, EventColumns
from schemas.directive import Directive

SLICE_MS = 100
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_ROWS = 5_000_000


@dataclass(frozen=True, slots=True)
class ReplayResult:
    events: int
    late_events: int
    directives: list[Directive]


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds, or ISO-8601 (UTC when no offset is given)."""
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"not a time: {text!r} (epoch ms or ISO-8601)") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - EPOCH) // timedelta(milliseconds=1)  # exact integer ms, no float truncation


def replay_events(events: EventColumns, config: GovernorConfig) -> ReplayResult:
    """The pure part: canonical order, fixed event-time slices, collect every directive."""
    gov = Governor(config)
    if len(events) == 0:
        return ReplayResult(0, 0, [])
    t = events.ts_ms + (events.latency_ms if config.event_time == "completion" else 0)
    order = np.lexsort((events.event_id.astype(str), t))
    events, t = events.take(order), t[order]
    directives: list[Directive] = []
    late = 0
    edges = np.arange(int(t[0]) - int(t[0]) % SLICE_MS, int(t[-1]) + SLICE_MS, SLICE_MS)
    bounds = np.searchsorted(t, edges, side="left")
    for lo, hi in itertools.pairwise(bounds):
        if hi > lo:
            late += gov.ingest(events.take(np.arange(lo, hi))).late
        out = gov.advance()
        directives.extend(out.directives)
    out = gov.advance(int(t[-1]) + config.horizons_ms[0] + config.allowed_lateness_ms)
    directives.extend(out.directives)
    return ReplayResult(len(events), late, directives)


def load_events(settings: Settings, from_ms: int, to_ms: int, endpoint: str | None) -> EventColumns:
    from infra.cli_sql import fetch

    db = settings.clickhouse_database
    where = f"ts >= fromUnixTimestamp64Milli({from_ms}) AND ts < fromUnixTimestamp64Milli({to_ms})"
    if endpoint is not None:
        where += " AND endpoint = " + _quote(endpoint)
    cols = ", ".join(
        "toUnixTimestamp64Milli(ts) AS ts_ms"
        if f == "ts_ms"
        else (
            "toInt8(status) AS status"
            if f == "status"
            else ("toInt8(applied) AS applied" if f == "applied" else f)
        )
        for f in FIELD_NAMES
    )
    sql = f"SELECT {cols} FROM {db}.events FINAL WHERE {where} LIMIT {MAX_ROWS + 1}"
    columns, rows = fetch(settings, sql)
    if len(rows) > MAX_ROWS:
        raise ConfigError(f"more than {MAX_ROWS} events in the range: replay a shorter one")
    data: dict[str, Any] = {c: [r[i] for r in rows] for i, c in enumerate(columns)}
    for name, codes in (("status", STATUS_CODES), ("applied", APPLIED_CODES)):
        data[name] = [codes.get(v, v) if isinstance(v, str) else v for v in data.get(name, [])]
    return EventColumns.from_arrays(data, n=len(rows))


def recorded_ids(settings: Settings, from_ms: int, to_ms: int) -> set[str]:
    from infra.cli_sql import fetch

    db = settings.clickhouse_database
    _, rows = fetch(
        settings,
        f"SELECT id FROM {db}.directives WHERE action != 'release' GROUP BY id "
        f"HAVING min(issued) >= fromUnixTimestamp64Milli({from_ms}) AND "
        f"min(issued) < fromUnixTimestamp64Milli({to_ms})",
    )
    return {str(r[0]) for r in rows}


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def run_replay(
    settings: Settings,
    from_text: str,
    to_text: str,
    endpoint: str | None,
    config_path: Path | None,
    compare: bool,
    as_json: bool,
) -> int:
    from_ms, to_ms = parse_time_ms(from_text), parse_time_ms(to_text)
    if to_ms <= from_ms:
        raise ConfigError("--to must be after --from")
    path = config_path or settings.governor_config
    config = load_governor_config(path) if path is not None else GovernorConfig()
    result = replay_events(load_events(settings, from_ms, to_ms, endpoint), config)
    # An episode belongs to the range when it started in it (its first message); events that
    # complete after ``to`` can still start episodes later, reported only as a count.
    episodes: dict[str, Directive] = {}
    for d in result.directives:
        if d.action.type != "release" and d.id not in episodes:
            episodes[d.id] = d
    after = {i for i, d in episodes.items() if d.issued_ms >= to_ms}
    episodes = {i: d for i, d in episodes.items() if i not in after}
    report: dict[str, Any] = {
        "from_ms": from_ms,
        "to_ms": to_ms,
        "events": result.events,
        "late_events": result.late_events,
        "directive_messages": len(result.directives),
        "episodes_after_range": len(after),
        "episodes": [
            {
                "id": d.id,
                "issued_ms": d.issued_ms,
                "detector": d.reason.detector,
                "score": round(d.reason.score, 3),
                "action": d.action.type,
                "scope": d.scope.key(),
            }
            for d in sorted(episodes.values(), key=lambda d: (d.issued_ms, d.id))
        ],
    }
    if compare:
        live = recorded_ids(settings, from_ms, to_ms)
        replayed = set(episodes)
        report["compare"] = {
            "recorded": len(live),
            "replayed": len(replayed),
            "both": len(live & replayed),
            "only_recorded": sorted(live - replayed),
            "only_replayed": sorted(replayed - live),
        }
    if as_json:
        sys.stdout.write(jsoncodec.dumps(report).decode() + "\n")
    else:
        _print_report(report)
    return 0


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"replayed {report['events']} events ({report['late_events']} late): "
        f"{len(report['episodes'])} directive episodes, {report['directive_messages']} messages"
    )
    table = Table("issued (UTC)", "detector", "score", "action", "scope", "id")
    for e in report["episodes"]:
        when = datetime.fromtimestamp(e["issued_ms"] / 1000, tz=UTC).isoformat(
            timespec="milliseconds"
        )
        table.add_row(when, e["detector"], str(e["score"]), e["action"], e["scope"], e["id"])
    console.print(table)
    if "compare" in report:
        c = report["compare"]
        console.print(
            f"live episodes {c['recorded']}, replayed {c['replayed']}, in both {c['both']}; "
            f"only live: {len(c['only_recorded'])}, only replayed: {len(c['only_replayed'])}"
        )
