"""``flyball sql``: query the history, through a running ``flyball up`` or directly.

When ``data_dir/up.json`` names a live process, the query goes to its loopback endpoint (chDB
locks its directory to the process that owns it); otherwise the store is opened directly.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from flyball.errors import FlyballError
from flyball.settings import Settings
from infra.errors import HistoryError
from infra.history import HistoryStore
from infra.query_server import analyst_query, jsonable, read_up_file
from infra.readonly_sql import QueryLimits
from schemas import jsoncodec

UP_FILE = "up.json"


def run_sql(settings: Settings, query: str, fmt: Literal["table", "json"] = "table") -> int:
    """Run ``query``; print a table or a JSON list of objects. 0 on success, 1 on a failed query."""
    try:
        columns, rows = fetch(settings, query)
    except FlyballError as exc:
        print(f"flyball sql: {exc}", file=sys.stderr)
        return 1
    if fmt == "json":
        objects = [dict(zip(columns, jsonable(list(r)), strict=True)) for r in rows]
        sys.stdout.write(jsoncodec.dumps(objects).decode() + "\n")
    else:
        print_table(columns, rows)
    sys.stdout.flush()
    return 0


def fetch(settings: Settings, query: str) -> tuple[list[str], list[Any]]:
    """(columns, rows) from the running endpoint when there is one, else from the store."""
    info = read_up_file(settings.data_dir / UP_FILE)
    if info is not None:
        return query_endpoint(str(info["query"]), str(info["token"]), query)
    with HistoryStore(settings) as store:
        limits = QueryLimits(settings.sql_max_seconds, settings.sql_max_rows)
        return analyst_query(store, query, settings.sql_read_only, limits)


def query_endpoint(
    url: str, token: str, query: str, timeout_s: float = 60.0
) -> tuple[list[str], list[Any]]:
    req = urllib.request.Request(
        f"{url}/query",
        data=query.encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            body = jsoncodec.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise HistoryError(_error_text(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise HistoryError(
            f"the query endpoint {url} of `flyball up` is unreachable: {exc}"
        ) from exc
    return list(body["columns"]), list(body["rows"])


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        doc = jsoncodec.loads(exc.read())
        return str(doc.get("error")) if isinstance(doc, dict) else str(doc)
    except (OSError, jsoncodec.JSONDecodeError):
        return f"HTTP {exc.code} {exc.reason}"


def print_table(columns: list[str], rows: list[Any]) -> None:
    table = Table(show_header=True, header_style="bold")
    for name in columns:
        table.add_column(name)
    for row in rows:
        table.add_row(*(_cell(v) for v in jsonable(list(row))))
    console = Console()
    console.print(table)
    console.print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}", style="dim")


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, dict | list):
        return jsoncodec.dumps(value).decode()
    return str(value)
