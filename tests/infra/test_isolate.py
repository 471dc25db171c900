"""Refused rows are isolated, the rest lands: the bisecting insert, the error classification, and
the worker's own sink, against the real ClickHouse engine (chDB)."""

from __future__ import annotations

import asyncio
import time

import pytest

from flyball.settings import Settings
from infra.errors import HistoryError
from infra.history import HistoryStore
from infra.isolate import insert_isolating
from schemas import jsoncodec
from schemas.columns import EventColumns
from schemas.directive import Action, Directive, Reason, Scope
from streams.sink import HistorySink


def events(ids: list[str], ts_ms: list[int] | None = None) -> EventColumns:
    t0 = int(time.time() * 1000)
    cols = {"event_id": ids, "ts_ms": ts_ms or [t0] * len(ids), "endpoint": ["ep"] * len(ids)}
    return EventColumns.from_arrays(cols)


class Refusing:
    """Counts inserts; refuses (non-retriably) any batch holding an id in ``bad``."""

    def __init__(self, bad: set[str], retriable: bool = False) -> None:
        self.bad, self.retriable, self.calls, self.landed = bad, retriable, 0, []

    def __call__(self, rows: list[str]) -> int:
        self.calls += 1
        if self.bad & set(rows):
            raise HistoryError("refused", retriable=self.retriable)
        self.landed += rows
        return len(rows)


def test_one_poison_row_among_1024_costs_about_two_log2_n_inserts() -> None:
    rows = [f"r{i}" for i in range(1024)]
    store, refused = Refusing({"r700"}), []
    written = insert_isolating(store, rows, lambda r, e: refused.append(r))
    assert written == 1023 and sorted(store.landed) == sorted(set(rows) - {"r700"})
    assert refused == [["r700"]]
    assert store.calls <= 2 * 10 + 1  # one failing path of depth log2(1024), a sibling per level


def test_a_retriable_failure_propagates_and_refuses_nothing() -> None:
    store, refused = Refusing({"r1"}, retriable=True), []
    with pytest.raises(HistoryError):
        insert_isolating(store, ["r0", "r1", "r2"], lambda r, e: refused.append(r))
    assert refused == [] and store.calls == 1  # kept for a retry, not split


def test_store_errors_say_whether_the_same_rows_could_land_later(
    settings: Settings, store: HistoryStore
) -> None:
    t0 = int(time.time() * 1000)
    with pytest.raises(HistoryError) as span:  # 102 days: more partitions than one block may make
        store.insert_events(events([f"d{i}" for i in range(102)],
                                   [t0 + i * 86_400_000 for i in range(102)]))  # fmt: skip
    assert not span.value.retriable
    d = Directive("x", t0, t0 + 1, Scope(), Action("defer", hold_ms=2**33), Reason("d", 0.5))
    with pytest.raises(HistoryError) as too_big:  # bypassing the decoder's bounds
        store.insert_directives([d])
    assert not too_big.value.retriable
    closed = HistoryStore(settings)
    closed.close()
    with pytest.raises(HistoryError) as gone:
        closed.insert_events(events(["a"]))
    assert gone.value.retriable


def test_the_worker_sink_dead_letters_refused_rows_and_writes_the_rest(
    settings: Settings, store: HistoryStore
) -> None:
    db = settings.clickhouse_database
    store.command(f"ALTER TABLE {db}.events ADD CONSTRAINT c CHECK event_id != 'poison'")
    letters: list[tuple[bytes, bytes]] = []
    sink = HistorySink(store, deadletter=lambda k, v: letters.append((k, v)))
    sink.add(events(["a", "poison", "b", "c"]), [], [], [])
    try:
        assert asyncio.run(sink.flush()) == 4  # every pending row is accounted for
    finally:
        sink.close()
    assert store.counts()["events"] == 3 and sink.refused_rows == 1
    [(key, value)] = letters
    assert key == b"history:events:poison"
    record = jsoncodec.loads(value)
    error = record["errors"][0]
    assert error["where"] == "events" and "VIOLATED_CONSTRAINT" in error["reason"]
