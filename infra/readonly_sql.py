"""What an analyst's query may do: read history, nothing else (``flyball sql``, ``POST /query``).

A query is first parsed by ClickHouse itself (``EXPLAIN AST``: parsing only, nothing runs), and
refused unless

- it is one statement that reads: ``SELECT``/``WITH``, ``SHOW``, ``DESCRIBE``, ``EXPLAIN``;
- it names no function that reaches files, processes or the network (``file``, ``url``, ``s3``,
  ``remote``, ``mysql``, ``executable``, …: ``DENIED_FUNCTIONS``), as a table or as a value;
- it writes no file (``INTO OUTFILE``) and sets nothing (its own ``SETTINGS`` clause).

It then runs with query-scoped settings (``readonly=1``, which also refuses any table function
that reaches outside; ``max_execution_time``; ``max_result_rows`` with ``result_overflow_mode``
``throw``). Scoped to the statement, because chDB keeps settings given to the client for the whole
session: a ``readonly`` client setting would also stop the history sink's inserts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from infra.errors import HistoryError

READ_ROOTS: Final = ("SelectWithUnionQuery", "ShowTables", "ShowColumns", "DescribeQuery",
                     "Explain", "ShowCreate", "ShowDatabases", "ExistsQuery")  # fmt: skip
DENIED_FUNCTIONS: Final = frozenset({
    "file", "filecluster", "url", "urlcluster", "s3", "s3cluster", "gcs", "oss", "cosn",
    "azureblobstorage", "azureblobstoragecluster", "hdfs", "hdfscluster", "remote",
    "remotesecure", "cluster", "clusterallreplicas", "mysql", "postgresql", "jdbc", "odbc",
    "mongodb", "redis", "sqlite", "executable", "input", "iceberg", "icebergs3", "icebergazure",
    "iceberghdfs", "icebergcluster", "deltalake", "deltalakecluster", "hudi", "hudicluster",
    "arrowflight", "ytsaurus", "dictionary", "mergetreeindex", "loop",
})  # fmt: skip
_FUNCTION = re.compile(r"^\s*Function (\w+)")


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """Per query: at most ``max_seconds`` of execution and ``max_rows`` result rows."""

    max_seconds: int = 30
    max_rows: int = 100_000

    def settings_clause(self) -> str:
        return (
            f" SETTINGS max_execution_time={int(self.max_seconds)},"
            f" max_result_rows={int(self.max_rows)}, result_overflow_mode='throw', readonly=1"
        )


def single_statement(sql: str) -> str:
    """``sql`` without a trailing ``;``, or ``HistoryError`` when it holds more than one
    statement. Checked before anything reaches the engine: chDB runs every statement of a
    multi-statement text, even after ``EXPLAIN AST``. Semicolons inside strings, quoted
    identifiers and comments do not count."""
    i, n, cut = 0, len(sql), -1
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            j = i + 1
            while j < n and sql[j] != ch:
                j += 2 if sql[j] == "\\" else 1
            i = j + 1
        elif sql.startswith("--", i):  # ("#" comments are not skipped: a ";" after one refuses)
            nl = sql.find("\n", i)
            i = n if nl < 0 else nl + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch == ";":
            if cut < 0:
                cut = i
            i += 1
        else:
            if cut >= 0 and not ch.isspace():
                raise HistoryError("read-only: one statement per query", retriable=False)
            i += 1
    return sql[:cut] if cut >= 0 else sql


def refusal(ast_lines: list[str]) -> str | None:
    """Why the query whose ``EXPLAIN AST`` is ``ast_lines`` may not run, or None."""
    if not ast_lines:
        return "empty query"
    root = ast_lines[0].strip()
    if not root.startswith(READ_ROOTS):
        return f"read-only: only SELECT, SHOW, DESCRIBE and EXPLAIN may run, not {root.split()[0]}"
    for line in ast_lines[1:]:
        depth = len(line) - len(line.lstrip(" "))
        node = line.strip()
        if node == "Set" or node.startswith("Set "):
            return "read-only: a query may not change settings (no SETTINGS clause)"
        if depth == 1 and node.startswith("Literal"):
            return "read-only: a query may not write a file (INTO OUTFILE)"
        m = _FUNCTION.match(line)
        if m and m.group(1).lower() in DENIED_FUNCTIONS:
            return f"read-only: {m.group(1)}() reaches files, processes or the network"
    return None


def guarded(statement: str, ast_lines: list[str], limits: QueryLimits) -> str:
    """One statement (``single_statement``'s result) with the limits appended, or
    ``HistoryError`` (not retriable) saying why not."""
    why = refusal(ast_lines)
    if why is not None:
        raise HistoryError(why, retriable=False)
    # on a new line: a trailing "-- comment" in the query must not swallow the limits
    return statement.rstrip() + "\n" + limits.settings_clause()
