"""Write a batch so that rows the store refuses cannot hold back the rows it accepts.

``insert_isolating(insert, rows, reject)`` inserts ``rows``; when the store refuses them
(``HistoryError`` with ``retriable=False``: a value a column cannot hold, a block over too many
partitions) it splits the batch in halves and inserts each, recursively, until every refused
part is a single row, handed to ``reject`` with the error. The valid rows of a batch with one
poison row land after about ``2 log2(n)`` inserts. A retriable error (the store unreachable or
overloaded) propagates unchanged: the caller keeps the batch and retries it later. Inserts are
idempotent (the tables dedupe), so re-inserting a half that partly landed is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, Self, TypeVar

from flyball.clock import wall_ms
from flyball.logbudget import LogBudget
from infra.errors import HistoryError
from schemas.columns import EventColumns
from schemas.deadletter import deadletter_record
from schemas.directive import Directive
from schemas.errors import DecodeError
from schemas.records import FeatureRecord, ScoreRecord

log = logging.getLogger(__name__)
_LOG_BUDGET = LogBudget(per_s=20)


class _Rows(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, rows: slice, /) -> Self: ...


Rows = TypeVar("Rows", bound=_Rows)  # a list of records, or an EventColumns batch


def insert_isolating(
    insert: Callable[[Rows], int],
    rows: Rows,
    reject: Callable[[Rows, HistoryError], None],
) -> int:
    """Insert ``rows``; returns the rows written. Refused single rows go to ``reject``."""
    if len(rows) == 0:
        return 0
    try:
        return insert(rows)
    except HistoryError as exc:
        if exc.retriable:
            raise
        if len(rows) == 1:
            reject(rows, exc)
            return 0
        half = len(rows) // 2
        first, second = rows[:half], rows[half:]
        return insert_isolating(insert, first, reject) + insert_isolating(insert, second, reject)


def row_name(rows: object) -> str:
    """How a dead letter names a refused row (a one-row batch or list): its id, or its key and
    time (no content)."""
    if isinstance(rows, EventColumns):
        return str(rows.event_id[0])[:128]
    row = rows[0] if isinstance(rows, list) and rows else rows
    if isinstance(row, Directive):
        return f"{row.id[:128]}@{row.issued_ms}"
    if isinstance(row, FeatureRecord | ScoreRecord):
        return f"{row.endpoint[:64]}/{row.tenant[:64]}@{row.ts_ms}"
    return type(row).__name__


def refused_deadletter(
    table: str, rows: object, exc: HistoryError, now_ms: int
) -> tuple[bytes, bytes]:
    """The dead letter (key, value) of one row the history store refused: the table, the row's
    name and the store's reason; never the row's values."""
    source = f"history:{table}:{row_name(rows)}"
    error = DecodeError(str(exc)[:512], table)
    return source.encode(), deadletter_record(source, [error], None, now_ms)


def rejecter(
    table: str, send: Callable[[bytes, bytes], None]
) -> Callable[[object, HistoryError], None]:
    """A ``reject`` for ``insert_isolating`` that dead-letters each refused row through ``send``
    (key, value), stamped with the wall clock, and logs it within a rate budget."""

    def reject(rows: object, exc: HistoryError) -> None:
        key, value = refused_deadletter(table, rows, exc, wall_ms())
        if _LOG_BUDGET.take():
            log.warning("history refused a row, dead-lettered %s: %s", key.decode(), exc)
        send(key, value)

    return reject
