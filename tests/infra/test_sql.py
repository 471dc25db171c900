"""The query endpoint and ``flyball sql``: through a running endpoint, or directly."""

from __future__ import annotations

import json
import os
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from flyball.settings import Settings
from infra.cli_sql import UP_FILE, run_sql
from infra.history import HistoryStore
from infra.query_server import QueryServer, read_up_file, remove_up_file, write_up_file
from schemas.columns import EventColumns
from tests.infra._support import now_ms

pytestmark = pytest.mark.integration


@pytest.fixture
def filled(store: HistoryStore) -> HistoryStore:
    t0 = now_ms()
    store.insert_events(
        EventColumns.from_arrays(
            {"event_id": ["a", "b", "c"], "ts_ms": [t0, t0 + 1, t0 + 2],
             "endpoint": ["ep1", "ep1", "ep2"], "status": [0, 1, 0]}
        )
    )  # fmt: skip
    return store


@pytest.fixture
def server(filled: HistoryStore, settings: Settings) -> Iterator[QueryServer]:
    qs = QueryServer(filled).start()
    up = settings.data_dir / UP_FILE
    write_up_file(up, {"pid": os.getpid(), "query": qs.url, "token": qs.token})
    yield qs
    remove_up_file(up)
    qs.stop()


def test_up_file_is_private_and_names_a_live_pid(settings: Settings, server: QueryServer) -> None:
    up = settings.data_dir / UP_FILE
    assert stat.S_IMODE(up.stat().st_mode) == 0o600
    assert read_up_file(up) == {"pid": os.getpid(), "query": server.url, "token": server.token}
    write_up_file(up, {"pid": 2**22 + 12345, "query": server.url, "token": "t"})  # no such pid
    assert read_up_file(up) is None


def test_endpoint_needs_the_token(server: QueryServer) -> None:
    req = urllib.request.Request(f"{server.url}/query", data=b"SELECT 1", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 401
    with urllib.request.urlopen(f"{server.url}/health", timeout=5) as resp:
        assert json.loads(resp.read()) == {"ok": True}


def test_sql_through_the_endpoint_json(
    settings: Settings, server: QueryServer, capsys: pytest.CaptureFixture[str]
) -> None:
    db = settings.clickhouse_database
    sql = (
        f"SELECT endpoint, count() AS n, max(ts) AS last FROM {db}.events "
        "GROUP BY endpoint ORDER BY endpoint"
    )
    assert run_sql(settings, sql, "json") == 0
    out = json.loads(capsys.readouterr().out)
    assert [(r["endpoint"], r["n"]) for r in out] == [("ep1", 2), ("ep2", 1)]
    assert isinstance(out[0]["last"], str)  # datetimes as ISO 8601


def test_sql_table_and_errors(
    settings: Settings, server: QueryServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run_sql(
            settings,
            f"SELECT status, count() FROM {settings.clickhouse_database}.events "
            "GROUP BY status ORDER BY status",
            "table",
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "ok" in out and "error" in out and "2 rows" in out
    assert run_sql(settings, "SELEC 1", "table") == 1
    err = capsys.readouterr().err
    assert err.startswith("flyball sql: ") and "Syntax error" in err


def test_sql_directly_without_a_running_up(
    settings: Settings, filled: HistoryStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not (settings.data_dir / UP_FILE).exists()
    assert (
        run_sql(settings, f"SELECT count() AS n FROM {settings.clickhouse_database}.events", "json")
        == 0
    )
    assert json.loads(capsys.readouterr().out) == [{"n": 3}]
    assert run_sql(settings, "SELECT * FROM nowhere.nothing", "json") == 1
    assert "nowhere" in capsys.readouterr().err


def test_endpoint_unreachable_is_a_clear_error(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_up_file(
        settings.data_dir / UP_FILE,
        {"pid": os.getpid(), "query": "http://127.0.0.1:9", "token": "x"},
    )
    assert run_sql(settings, "SELECT 1", "json") == 1
    assert "unreachable" in capsys.readouterr().err


HOSTILE = {
    "DROP TABLE {db}.directives": "only SELECT",
    "INSERT INTO {db}.scores (detector) VALUES ('x')": "only SELECT",
    "ALTER TABLE {db}.events DELETE WHERE 1": "only SELECT",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')": "file()",
    "SELECT file('/etc/passwd')": "file()",
    "SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString')": "url()",
    "SELECT * FROM remote('127.0.0.1:9000', system.one)": "remote()",
    "SELECT * FROM (SELECT * FROM s3('http://127.0.0.1:9/b/k.csv'))": "s3()",
    "SELECT 1 INTO OUTFILE '/tmp/flyball-outfile-test'": "INTO OUTFILE",
    "SELECT 1 SETTINGS readonly = 0": "SETTINGS",
    "SELECT 1; DROP TABLE {db}.directives": "one statement",  # chDB would run both
    "SELECT ';' AS a /* ; */; -- ;\n DROP TABLE {db}.directives": "one statement",
}


@pytest.mark.parametrize("sql", sorted(HOSTILE))
def test_the_query_endpoint_reads_only(
    settings: Settings, server: QueryServer, capsys: pytest.CaptureFixture[str], sql: str
) -> None:
    """Finding: DROP TABLE of the audit trail, file('/etc/passwd') and url() all worked through
    the endpoint. Each is refused with its reason, and history is intact."""
    db = settings.clickhouse_database
    assert run_sql(settings, sql.format(db=db), "json") == 1
    assert HOSTILE[sql] in capsys.readouterr().err
    assert not Path("/tmp/flyball-outfile-test").exists()
    assert server.store.query(f"SELECT count() FROM {db}.directives")[1] == [(0,)]
    assert server.store.counts()["events"] == 3


def test_results_and_time_are_bounded_and_a_comment_cannot_hide_the_limits(
    settings: Settings, filled: HistoryStore
) -> None:
    from infra.readonly_sql import QueryLimits

    limits = QueryLimits(max_seconds=1, max_rows=100)
    with pytest.raises(Exception, match=r"max rows|TOO_MANY_ROWS"):
        filled.query_readonly("SELECT number FROM numbers(1000) -- no limits?", limits)
    with pytest.raises(Exception, match=r"TIMEOUT_EXCEEDED|Timeout exceeded|time"):
        filled.query_readonly("SELECT count() FROM numbers_mt(1e12) WHERE sipHash64(number) = 7",
                              limits)  # fmt: skip
    # the limits were scoped to those queries: the store still writes (chDB keeps client
    # settings for the whole session, which would have made history read-only)
    filled.insert_events(EventColumns.from_arrays(
        {"event_id": ["z"], "ts_ms": [now_ms()], "endpoint": ["ep"], "status": [0]}))  # fmt: skip
    assert filled.counts()["events"] == 4


def test_an_operator_may_opt_out_of_read_only(make_settings: object, store: HistoryStore) -> None:
    from infra.query_server import analyst_query
    from infra.readonly_sql import QueryLimits

    sql = f"CREATE TABLE {store.database}.notes (x UInt8) ENGINE = Memory"
    with pytest.raises(Exception, match="only SELECT"):
        analyst_query(store, sql, True, QueryLimits())
    analyst_query(store, sql, False, QueryLimits())  # sql_read_only = false: trusted operators
    assert store.query(f"EXISTS TABLE {store.database}.notes")[1] == [(1,)]
