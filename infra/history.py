"""The history store: events, features, scores and directives in ClickHouse.

One code path (clickhouse-connect) serves both backends: ``chdb:///path`` runs ClickHouse's engine
in this process (chDB; it locks its directory to one process), ``http(s)://host:port`` talks to a
ClickHouse server with the user, password and database from :class:`Settings`. Inserts are
column-oriented; every call holds one lock, so sink, query endpoint and callers may share a store
across threads. The schema is ``infra/ddl.sql``; tables and example queries: ``docs/history.md``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from importlib import resources
from typing import Any, Final
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DataError, ProgrammingError

from flyball.settings import Settings
from infra.errors import HistoryError
from infra.readonly_sql import QueryLimits, guarded, single_statement
from schemas import jsoncodec
from schemas.columns import FIELD_NAMES, EventColumns
from schemas.directive import Directive
from schemas.records import FeatureRecord, ScoreRecord

TABLES: Final[tuple[str, ...]] = ("events", "features", "scores", "directives")

# The events table's columns are EventColumns' fields, except ts_ms which is stored as `ts`.
EVENT_COLUMNS: Final[tuple[str, ...]] = tuple("ts" if f == "ts_ms" else f for f in FIELD_NAMES)
FEATURE_COLUMNS: Final = ("ts", "horizon_ms", "endpoint", "tenant", "values")
SCORE_COLUMNS: Final = ("ts", "detector", "endpoint", "tenant", "score", "evidence")
DIRECTIVE_COLUMNS: Final = (
    "id", "issued", "expires", "scope_endpoint", "scope_tenant", "scope_agent_id",
    "min_priority", "min_attempt", "min_depth", "action", "rate_per_s", "burst", "shares",
    "default_share", "hold_ms", "jitter_ms", "retry_after_ms", "fraction", "target",
    "detector", "score", "evidence", "signed", "max_inflight",
)  # fmt: skip
_ACTION_CODES: Final = {
    "throttle": 1, "defer": 2, "shed": 3, "reroute": 4, "release": 5, "limit": 6,
}

# counts(): distinct rows, so replays and redeliveries do not count twice.
_COUNT_SQL: Final = {
    "events": "SELECT uniqExact(event_id) FROM {db}.events",
    "features": "SELECT count() FROM {db}.features FINAL",
    "scores": "SELECT count() FROM {db}.scores FINAL",
    "directives": "SELECT count() FROM {db}.directives FINAL",
}


def ddl_statements(database: str, ttl_days: int) -> list[str]:
    """The statements of ``infra/ddl.sql`` for one database, comments removed."""
    text = resources.files("infra").joinpath("ddl.sql").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
    body = "\n".join(lines).replace("{db}", database).replace("{ttl_days}", str(int(ttl_days)))
    return [s.strip() for s in body.split(";") if s.strip()]


def connect(settings: Settings, dsn: str | None = None) -> Client:
    """A clickhouse-connect client for ``dsn`` (default ``settings.history_dsn``)."""
    dsn = dsn or settings.history_dsn
    try:
        if dsn.startswith("chdb://"):
            return clickhouse_connect.get_client(dsn=dsn)
        parts = urlsplit(dsn)
        password = settings.clickhouse_password
        return clickhouse_connect.get_client(
            dsn=dsn,
            username=parts.username or settings.clickhouse_user,
            password=parts.password or (password.get_secret_value() if password else ""),
        )
    except (ClickHouseError, OSError, RuntimeError) as exc:
        raise HistoryError(f"cannot open the history store at {redact(dsn)}: {exc}") from exc


def redact(dsn: str) -> str:
    """The DSN without a password, for logs and messages."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


class HistoryStore:
    """ClickHouse history through clickhouse-connect; thread-safe (one lock around the client)."""

    def __init__(self, settings: Settings, dsn: str | None = None) -> None:
        self.settings = settings
        self.dsn = dsn or settings.history_dsn
        self.database = settings.clickhouse_database
        self._lock = threading.Lock()
        self._client: Client | None = connect(settings, self.dsn)

    # --- schema ---
    def apply_ddl(self) -> None:
        """Create the database, tables and views if missing (idempotent)."""
        for stmt in ddl_statements(self.database, self.settings.clickhouse_ttl_days):
            self.command(stmt)

    # --- inserts (column-oriented; empty batches are no-ops) ---
    def insert_events(self, events: EventColumns) -> int:
        if len(events) == 0:
            return 0
        data = [getattr(events, f).tolist() for f in FIELD_NAMES]
        self._insert("events", data, EVENT_COLUMNS)
        return len(events)

    def insert_features(self, records: Sequence[FeatureRecord]) -> int:
        if not records:
            return 0
        data: list[list[Any]] = [
            [r.ts_ms for r in records],
            [r.horizon_ms for r in records],
            [r.endpoint for r in records],
            [r.tenant for r in records],
            [{k: float(v) for k, v in r.values.items()} for r in records],
        ]
        self._insert("features", data, FEATURE_COLUMNS)
        return len(records)

    def insert_scores(self, records: Sequence[ScoreRecord]) -> int:
        if not records:
            return 0
        data: list[list[Any]] = [
            [r.ts_ms for r in records],
            [r.detector for r in records],
            [r.endpoint for r in records],
            [r.tenant for r in records],
            [float(r.score) for r in records],
            [jsoncodec.dumps(r.evidence).decode() for r in records],
        ]
        self._insert("scores", data, SCORE_COLUMNS)
        return len(records)

    def insert_directives(self, directives: Sequence[Directive]) -> int:
        if not directives:
            return 0
        rows = [_directive_row(d) for d in directives]
        self._insert("directives", [list(c) for c in zip(*rows, strict=True)], DIRECTIVE_COLUMNS)
        return len(directives)

    # --- reads ---
    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a query; return (column names, rows)."""
        with self._lock:
            client = self._require()
            try:
                result = client.query(sql)
            except ClickHouseError as exc:
                raise HistoryError(_clean(str(exc))) from exc
            return list(result.column_names), [tuple(r) for r in result.result_rows]

    def query_readonly(
        self, sql: str, limits: QueryLimits | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """An analyst's query: read-only and bounded in time and rows (``infra.readonly_sql``);
        a refused query raises ``HistoryError`` saying why."""
        one = single_statement(sql)
        _, ast = self.query("EXPLAIN AST " + one)
        return self.query(guarded(one, [str(r[0]) for r in ast], limits or QueryLimits()))

    def command(self, sql: str) -> Any:
        with self._lock:
            client = self._require()
            try:
                return client.command(sql)
            except ClickHouseError as exc:
                raise HistoryError(_clean(str(exc))) from exc

    def counts(self) -> dict[str, int]:
        """Distinct rows per table (events by event_id, the others FINAL)."""
        out = {}
        for table, sql in _COUNT_SQL.items():
            _, rows = self.query(sql.replace("{db}", self.database))
            out[table] = int(rows[0][0])
        return out

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ---
    def _require(self) -> Client:
        if self._client is None:
            raise HistoryError("the history store is closed")
        return self._client

    def _insert(self, table: str, data: list[list[Any]], names: Sequence[str]) -> None:
        with self._lock:
            client = self._require()
            try:
                client.insert(
                    f"{self.database}.{table}",
                    data,
                    column_names=list(names),
                    column_oriented=True,
                )
            except (ClickHouseError, ValueError, TypeError, OverflowError) as exc:
                raise HistoryError(
                    f"insert into {table}: {_clean(str(exc))}", retriable=_retriable(exc)
                ) from exc


def _directive_row(d: Directive) -> tuple[Any, ...]:
    s, a, r = d.scope, d.action, d.reason
    return (
        d.id,
        d.issued_ms,
        d.expires_ms,
        s.endpoint or "",
        s.tenant or "",
        s.agent_id or "",
        s.min_priority,
        s.min_attempt,
        s.min_depth,
        _ACTION_CODES[a.type],
        float(a.rate_per_s),
        float(a.burst),
        dict(a.shares),
        float(a.default_share),
        int(a.hold_ms),
        int(a.jitter_ms),
        int(a.retry_after_ms),
        float(a.fraction),
        a.target,
        r.detector,
        float(r.score),
        jsoncodec.dumps(r.evidence).decode(),
        d.sig is not None,
        int(a.max_inflight),
    )


# Server error codes that refuse the rows sent, not the statement or the server's state: the same
# rows fail again, other rows would not (ClickHouse's src/Common/ErrorCodes.cpp).
_ROW_ERROR_CODES = frozenset({
    6,  # CANNOT_PARSE_TEXT
    27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    41,  # CANNOT_PARSE_DATETIME
    53,  # TYPE_MISMATCH
    69,  # ARGUMENT_OUT_OF_BOUND
    70,  # CANNOT_CONVERT_TYPE
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    407,  # DECIMAL_OVERFLOW
    469,  # VIOLATED_CONSTRAINT
})


def _retriable(exc: Exception) -> bool:
    """Whether the same insert may succeed later. Client-side serialization failures (a value
    the column type cannot hold) and the server's row errors are not; a block spanning more
    partitions than one insert may create is not either (code 252 also means "too many parts,
    merges are behind", which is retriable: told apart by its message). Anything else (the
    store unreachable, overloaded, restarting, a table missing) is."""
    if isinstance(exc, DataError | ProgrammingError | ValueError | TypeError | OverflowError):
        return False
    code = getattr(exc, "code", None)
    if code == 252:
        return "single INSERT block" not in str(exc)
    return code not in _ROW_ERROR_CODES


def _clean(message: str) -> str:
    """ClickHouse's message without the transport's trailing ``FORMAT Native`` echo."""
    return message.replace("\n FORMAT Native", "").strip()
