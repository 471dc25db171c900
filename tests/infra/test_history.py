"""The history store against the real chDB engine: DDL, inserts of each kind, dedupe, queries."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from flyball.settings import Settings
from infra.errors import HistoryError
from infra.history import TABLES, HistoryStore, ddl_statements, redact
from schemas.columns import STATUS_ERROR, STATUS_OK, STATUS_TIMEOUT, EventColumns
from schemas.directive import Action, Directive, Reason, Scope
from schemas.records import FeatureRecord, ScoreRecord
from tests.infra._support import now_ms

pytestmark = pytest.mark.integration


def events(t0: int, n: int, endpoint: str = "POST /v1/chat", prefix: str = "e") -> EventColumns:
    return EventColumns.from_arrays(
        {
            "event_id": [f"{prefix}{i}" for i in range(n)],
            "gateway_id": ["gw-1"] * n,
            "ts_ms": [t0 + i for i in range(n)],
            "latency_ms": [100 + i for i in range(n)],
            "tenant": ["acme" if i % 2 else "umbrella" for i in range(n)],
            "endpoint": [endpoint] * n,
            "status": [(STATUS_OK, STATUS_ERROR, STATUS_TIMEOUT)[i % 3] for i in range(n)],
            "attempt": [i % 2 for i in range(n)],
            "root_id": [f"r{i // 2}" for i in range(n)],
            "tokens_in": [10] * n,
            "tokens_out": [5] * n,
        }
    )


def test_ddl_is_idempotent_and_creates_every_table(store: HistoryStore) -> None:
    store.apply_ddl()
    store.apply_ddl()
    _, rows = store.query(f"SELECT name FROM system.tables WHERE database = '{store.database}'")
    names = {r[0] for r in rows}
    assert set(TABLES) <= names
    assert {"events_minute", "events_minute_mv", "events_per_second"} <= names


def test_ddl_statements_substitute_database_and_ttl() -> None:
    stmts = ddl_statements("db_x", 7)
    assert stmts[0] == "CREATE DATABASE IF NOT EXISTS db_x"
    assert all("{db}" not in s and "{ttl_days}" not in s for s in stmts)
    assert any("INTERVAL 7 DAY" in s for s in stmts)


def test_events_round_trip_with_types(store: HistoryStore) -> None:
    t0 = now_ms()
    assert store.insert_events(events(t0, 6)) == 6
    cols, rows = store.query(
        f"SELECT event_id, toUnixTimestamp64Milli(ts), status, tenant, latency_ms, attempt "
        f"FROM {store.database}.events ORDER BY ts"
    )
    assert cols == [
        "event_id",
        "toUnixTimestamp64Milli(ts)",
        "status",
        "tenant",
        "latency_ms",
        "attempt",
    ]
    assert rows[0] == ("e0", t0, "ok", "umbrella", 100, 0)
    assert rows[1] == ("e1", t0 + 1, "error", "acme", 101, 1)
    assert rows[2][2] == "timeout"
    assert store.insert_events(EventColumns.empty()) == 0


def test_replayed_events_are_deduplicated_by_event_id(store: HistoryStore) -> None:
    t0 = now_ms()
    batch = events(t0, 50)
    store.insert_events(batch)
    store.insert_events(batch)  # a replay: same ids, same ts
    store.insert_events(batch.take(np.arange(10, 20)))  # a partial redelivery
    assert store.counts()["events"] == 50
    _, rows = store.query(f"SELECT count() FROM {store.database}.events FINAL")
    assert rows == [(50,)]
    store.command(f"OPTIMIZE TABLE {store.database}.events FINAL")
    _, rows = store.query(f"SELECT count() FROM {store.database}.events")
    assert rows == [(50,)]


def test_features_scores_and_directives(store: HistoryStore) -> None:
    t0 = now_ms()
    feats = [
        FeatureRecord(t0, 10_000, "POST /v1/chat", "", {"attempts": 40.0, "amplification": 2.5}),
        FeatureRecord(t0, 10_000, "POST /v1/chat", "acme", {"attempts": 30.0}),
    ]
    assert store.insert_features(feats) == 2
    store.insert_features(feats[:1])  # redelivered
    scores = [ScoreRecord(t0, "retry_storm", "POST /v1/chat", "", 0.93, {"amplification": 3.1})]
    assert store.insert_scores(scores) == 1
    scope = Scope(endpoint="POST /v1/chat", min_attempt=1)
    d = Directive(
        id="ep1",
        issued_ms=t0,
        expires_ms=t0 + 3_000,
        scope=scope,
        action=Action("defer", hold_ms=250, jitter_ms=500),
        reason=Reason("retry_storm", 0.93, {"amplification": 3.1}),
    )
    refresh = Directive("ep1", t0 + 1_000, t0 + 4_000, scope, d.action, d.reason)
    release = Directive("ep1", t0 + 2_000, t0 + 2_000, scope, Action("release"), d.reason)
    throttle = Directive(
        "ep2",
        t0,
        t0 + 5_000,
        Scope(tenant="acme"),
        Action("throttle", rate_per_s=20.0, burst=5.0, shares=(("gw-1", 0.75),)),
        Reason("contention", 0.8),
        sig="k1",  # signed by key k1 (schemas.directive.seal)
    )
    assert store.insert_directives([d, refresh, release, throttle]) == 4
    store.insert_directives([d])  # redelivered
    assert store.counts() == {"events": 0, "features": 2, "scores": 1, "directives": 4}

    db = store.database
    _, rows = store.query(
        f"SELECT values['amplification'] FROM {db}.features FINAL WHERE tenant = ''"
    )
    assert rows == [(2.5,)]
    _, rows = store.query(f"SELECT JSONExtractFloat(evidence, 'amplification') FROM {db}.scores")
    assert rows == [(3.1,)]
    _, rows = store.query(
        f"SELECT action, hold_ms, min_attempt, min_priority, signed FROM {db}.directives FINAL "
        f"WHERE id = 'ep1' ORDER BY issued"
    )
    assert rows == [("defer", 250, 1, None, False), ("defer", 250, 1, None, False),
                    ("release", 0, 1, None, False)]  # fmt: skip
    _, rows = store.query(
        f"SELECT shares['gw-1'], rate_per_s, scope_tenant, signed FROM {db}.directives "
        f"WHERE id = 'ep2'"
    )
    assert rows == [(0.75, 20.0, "acme", True)]


def test_rollups(store: HistoryStore) -> None:
    t0 = now_ms() // 60_000 * 60_000  # a minute boundary: all rows in one minute
    store.insert_events(events(t0, 30))
    _, rows = store.query(
        f"SELECT sum(attempts), sum(retries), sum(errors), sum(timeouts), sum(tokens), "
        f"quantilesMerge(0.5, 0.99)(latency_q) FROM {store.database}.events_minute"
    )
    attempts, retries, errors, timeouts, tokens, (p50, p99) = rows[0]
    assert (attempts, retries, errors, timeouts, tokens) == (30, 15, 10, 10, 450)
    assert 110 <= p50 <= 120 and 125 <= p99 <= 129
    _, rows = store.query(f"SELECT sum(attempts) FROM {store.database}.events_per_second")
    assert rows == [(30,)]


def test_bad_query_raises_history_error(store: HistoryStore) -> None:
    with pytest.raises(HistoryError, match="Syntax error"):
        store.query("SELEC 1")
    with pytest.raises(HistoryError, match=r"UNKNOWN_TABLE|does not exist"):
        store.query(f"SELECT * FROM {store.database}.nope")


def test_closed_store_refuses(settings: Settings) -> None:
    s = HistoryStore(settings)
    s.close()
    with pytest.raises(HistoryError, match="closed"):
        s.query("SELECT 1")


def test_redact_hides_password() -> None:
    assert redact("https://u:secret@ch.example:8443/db") == "https://u:***@ch.example:8443/db"
    assert redact("chdb:///var/lib/flyball") == "chdb:///var/lib/flyball"


def test_every_example_query_in_docs_runs(store: HistoryStore) -> None:
    """docs/history.md's SQL examples run against the real schema (with a little data)."""
    import re
    from pathlib import Path

    t0 = now_ms()
    store.insert_events(events(t0, 12, endpoint="POST /v1/chat"))
    store.insert_features([FeatureRecord(t0, 10_000, "POST /v1/chat", "", {"amplification": 2.0})])
    store.insert_scores([ScoreRecord(t0, "retry_storm", "POST /v1/chat", "", 0.7)])
    reason = Reason("retry_storm", 0.7)
    store.insert_directives(
        [Directive("9f0c…", t0, t0 + 1, Scope(endpoint="POST /v1/chat"), Action("shed"), reason)]
    )
    doc = (Path(__file__).resolve().parents[2] / "docs" / "history.md").read_text()
    queries = [
        q.strip()
        for block in re.findall(r"```sql\n(.*?)```", doc, re.S)
        for q in block.split(";")
        if q.strip()
    ]
    assert len(queries) >= 8
    for q in queries:
        _, rows = store.query(q.replace("flyball.", f"{store.database}."))
        assert isinstance(rows, list)


def test_unreachable_server_is_a_history_error_without_the_password(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings(clickhouse_dsn="http://u:secret@127.0.0.1:9")  # nothing listens on 9
    with pytest.raises(HistoryError) as err:
        HistoryStore(s)
    assert "http://u:***@127.0.0.1:9" in str(err.value) and "secret" not in str(err.value)


def test_store_is_usable_from_many_threads(store: HistoryStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    t0 = now_ms()

    def work(i: int) -> int:
        store.insert_events(events(t0 + i * 1000, 20, prefix=f"w{i}-"))
        _, rows = store.query(f"SELECT count() FROM {store.database}.events")
        return int(rows[0][0])

    with ThreadPoolExecutor(8) as pool:
        assert all(n >= 20 for n in pool.map(work, range(16)))
    assert store.counts()["events"] == 16 * 20
