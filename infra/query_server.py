"""SQL over HTTP on loopback, served by the process that owns the history store.

chDB locks its directory to one process, so analysts' queries while ``flyball up`` runs go through
it: ``POST /query`` with the SQL as the body and ``Authorization: Bearer <token>``; the answer is
``{"columns": [...], "rows": [[...], ...]}`` or, with status 400, ``{"error": "..."}``.
``GET /health`` answers ``{"ok": true}``. Queries are read-only and bounded in time and result rows
unless ``sql_read_only`` is false (``infra.readonly_sql``); they run on their own connection, so a
slow query never holds back the history sink's inserts; idle connections close after 30 s.
The token is random per run and is written, with the
URL, to ``data_dir/up.json`` (mode 0600), which :mod:`infra.cli_sql` reads.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hmac
import ipaddress
import logging
import os
import secrets
import threading
import uuid
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from flyball.errors import FlyballError
from infra.readonly_sql import QueryLimits
from schemas import jsoncodec

log = logging.getLogger(__name__)

MAX_SQL_BYTES = 1_000_000
IDLE_TIMEOUT_S = 30


class Queryable(Protocol):
    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]: ...

    def query_readonly(
        self, sql: str, limits: QueryLimits | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]: ...


def analyst_query(
    store: Queryable, sql: str, read_only: bool, limits: QueryLimits
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """An analyst's query as the settings allow: read-only and bounded by default."""
    return store.query_readonly(sql, limits) if read_only else store.query(sql)


def jsonable(value: Any) -> Any:
    """A query result value as plain JSON data (datetimes ISO 8601, maps with text keys, …)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(
        value, decimal.Decimal | uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address
    ):
        return str(value)
    return str(value)


def encode_result(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    return jsoncodec.dumps({"columns": list(columns), "rows": [jsonable(list(r)) for r in rows]})


class QueryServer:
    """A ``ThreadingHTTPServer`` on 127.0.0.1 in a daemon thread; ``start()`` / ``stop()``."""

    def __init__(
        self,
        store: Queryable,
        port: int = 0,
        token: str | None = None,
        read_only: bool = True,
        limits: QueryLimits | None = None,
    ) -> None:
        self.store = store
        self.read_only = read_only
        self.limits = limits or QueryLimits()
        self.token = token or secrets.token_urlsafe(32)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_class(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> QueryServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, name="flyball-query", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def authorized(self, header: str | None) -> bool:
        expected = f"Bearer {self.token}"
        return header is not None and hmac.compare_digest(header.encode(), expected.encode())


def _handler_class(server: QueryServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = IDLE_TIMEOUT_S  # an idle keep-alive connection is closed (socket timeout)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("query endpoint: " + format, *args)

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send(status, jsoncodec.dumps({"error": message}))

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, b'{"ok":true}')
            else:
                self._error(404, "not found: POST /query or GET /health")

        def do_POST(self) -> None:
            if self.path != "/query":
                self._error(404, "not found: POST /query")
                return
            if not server.authorized(self.headers.get("Authorization")):
                self._error(401, "missing or wrong bearer token (see data_dir/up.json)")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_SQL_BYTES:
                self._error(400, f"the body must be SQL of 1..{MAX_SQL_BYTES} bytes")
                return
            sql = self.rfile.read(length).decode("utf-8", "replace")
            try:
                columns, rows = analyst_query(server.store, sql, server.read_only, server.limits)
            except FlyballError as exc:
                self._error(400, str(exc))
                return
            except Exception as exc:  # the client gets the message; the server keeps serving
                log.exception("query failed")
                self._error(500, f"{type(exc).__name__}: {exc}")
                return
            self._send(200, encode_result(columns, rows))

    return Handler


# --- up.json: how `flyball sql` finds a running `flyball up` ---
def write_up_file(path: Path, info: dict[str, Any]) -> None:
    """Write ``info`` as JSON to ``path`` with mode 0600, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(jsoncodec.dumps(info))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_up_file(path: Path) -> dict[str, Any] | None:
    """The contents of ``up.json`` when it names a live process, else None."""
    try:
        info = jsoncodec.loads(path.read_bytes())
    except (OSError, jsoncodec.JSONDecodeError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        return None
    return info if pid_alive(info["pid"]) else None


def remove_up_file(path: Path) -> None:
    """Remove ``up.json`` if it is this process's."""
    try:
        info = jsoncodec.loads(path.read_bytes())
    except (OSError, jsoncodec.JSONDecodeError):
        return
    if isinstance(info, dict) and info.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
