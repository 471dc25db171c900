"""The history sink end to end: frames on Kafka -> rows in chDB, bad input, failing inserts."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from flyball.settings import Settings
from infra.broker import EmbeddedBroker
from infra.errors import HistoryError
from infra.history import HistoryStore
from infra.sink import HistorySink, SinkConfig
from infra.topics import ensure_topics
from schemas import jsoncodec
from schemas.columns import EventColumns
from schemas.control import Heartbeat
from schemas.directive import Action, Directive, Reason, Scope
from schemas.frames import encode_event, encode_frame
from schemas.records import FeatureRecord, ScoreRecord
from tests.infra._support import now_ms, produce, wait_until

pytestmark = pytest.mark.integration


def frame(t0: int, start: int, n: int, endpoint: str = "POST /v1/chat") -> bytes:
    return encode_frame(
        "gw-1",
        endpoint,
        {
            "event_id": [f"e{start + i}" for i in range(n)],
            "ts_ms": [t0 + start + i for i in range(n)],
            "endpoint": [endpoint] * n,
            "status": ["ok"] * n,
            "latency_ms": [50] * n,
        },
    )


class FlakyStore:
    """A store wrapper whose inserts fail while ``failing`` is set (ClickHouse down)."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store
        self.failing = threading.Event()
        self.failing.set()

    def _check(self) -> None:
        if self.failing.is_set():
            raise HistoryError("injected: ClickHouse is unreachable")

    def insert_events(self, events: EventColumns) -> int:
        self._check()
        return self.store.insert_events(events)

    def insert_features(self, records: list[FeatureRecord]) -> int:
        self._check()
        return self.store.insert_features(records)

    def insert_scores(self, records: list[ScoreRecord]) -> int:
        self._check()
        return self.store.insert_scores(records)

    def insert_directives(self, directives: list[Directive]) -> int:
        self._check()
        return self.store.insert_directives(directives)


@pytest.fixture
def topics(settings: Settings, broker: EmbeddedBroker) -> str:
    ensure_topics(settings, broker.bootstrap)
    return broker.bootstrap


@pytest.fixture
def group() -> str:
    return f"hist-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def sink_factory(settings: Settings, topics: str, group: str) -> Iterator[list[HistorySink]]:
    started: list[HistorySink] = []
    yield started
    for s in started:
        s.stop()


def committed(settings: Settings, bootstrap: str, group: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    parts = [
        TopicPartition(settings.topic_events, p) for p in range(settings.topic_events_partitions)
    ]
    try:
        return {tp.partition: tp.offset for tp in c.committed(parts, timeout=5)}
    finally:
        c.close()


def test_frames_features_scores_directives_land_in_history(
    settings: Settings,
    store: HistoryStore,
    topics: str,
    group: str,
    sink_factory: list[HistorySink],
) -> None:
    t0 = now_ms()
    frames = [(f"ep{i % 3}", frame(t0, i * 100, 100, f"ep{i % 3}")) for i in range(12)]
    produce(topics, settings.topic_events, frames)
    produce(
        topics, settings.topic_events, [("ep0", b"not json"), ("ep1", b'{"v":1,"kind":"nope"}')]
    )
    cols: dict[str, list[Any]] = {
        "event_id": ["x1", "x2"],
        "ts_ms": [t0, "soon"],
        "endpoint": ["ep0"] * 2,
        "status": [0, 0],
    }
    bad_rows = encode_frame("gw-2", "ep0", cols)
    single = encode_event({"event_id": "s1", "ts_ms": t0, "endpoint": "ep9", "status": "error"})
    produce(topics, settings.topic_events, [("ep0", bad_rows), ("ep9", single)])
    produce(
        topics,
        settings.topic_features,
        [("ep0", b'{"v":1,"kind":"features","ts_ms":%d,"horizon_ms":10000,"endpoint":"ep0",'
                 b'"tenant":"","values":{"attempts":12}}' % t0)],
    )  # fmt: skip
    produce(topics, settings.topic_scores, [("ep0", b'{"v":1,"kind":"score","ts_ms":-1}')])
    d = Directive("d1", t0, t0 + 3000, Scope(endpoint="ep0"), Action("shed", fraction=0.5),
                  Reason("retry_storm", 0.9))  # fmt: skip
    produce(
        topics, settings.topic_control, [("ep0", d.encode()), ("hb", Heartbeat(t0, "w1").encode())]
    )

    sink = HistorySink(settings, topics, store, SinkConfig(group_id=group, flush_interval_ms=200))
    sink_factory.append(sink.start())
    wait_until(lambda: store.counts()["events"] == 1202, 20, "event rows")
    wait_until(lambda: sink.stats().commits >= 1 and sink.stats().messages == 20, 10, "commit")
    counts = store.counts()
    assert counts == {"events": 1202, "features": 1, "scores": 0, "directives": 1}
    st = sink.stats()
    # not JSON, unknown kind, the frame with one bad row, the score with a negative ts_ms
    assert st.bad_messages == 4
    assert st.rejected_rows == 3  # one message-level error each + the bad row
    assert st.heartbeats == 1 and st.insert_failures == 0 and not st.paused
    _, rows = store.query(
        f"SELECT status FROM {settings.clickhouse_database}.events WHERE event_id='s1'"
    )
    assert rows == [("error",)]


def test_replayed_frames_are_deduplicated(
    settings: Settings,
    store: HistoryStore,
    topics: str,
    group: str,
    sink_factory: list[HistorySink],
) -> None:
    t0 = now_ms()
    frames = [("ep", frame(t0, i * 50, 50)) for i in range(4)]
    produce(topics, settings.topic_events, frames + frames)  # the log carries a replay
    sink = HistorySink(settings, topics, store, SinkConfig(group_id=group, flush_interval_ms=100))
    sink_factory.append(sink.start())
    wait_until(lambda: sink.stats().events == 400, 20, "all rows written")
    assert store.counts()["events"] == 200


def test_failing_inserts_pause_then_resume_without_losing_rows(
    settings: Settings,
    store: HistoryStore,
    topics: str,
    group: str,
    sink_factory: list[HistorySink],
) -> None:
    t0 = now_ms()
    flaky = FlakyStore(store)
    cfg = SinkConfig(group_id=group, flush_interval_ms=100, backoff_min_ms=50, backoff_max_ms=200)
    sink = HistorySink(settings, topics, flaky, cfg)
    sink_factory.append(sink.start())
    produce(topics, settings.topic_events, [(f"ep{i % 4}", frame(t0, i * 10, 10, f"ep{i % 4}"))
                                            for i in range(20)])  # fmt: skip
    wait_until(lambda: sink.stats().insert_failures >= 3 and sink.stats().paused, 20, "paused")
    produce(topics, settings.topic_events, [("ep0", frame(t0, 10_000, 10, "ep0"))])  # while paused
    assert store.counts()["events"] == 0
    assert all(off < 0 for off in committed(settings, topics, group).values())  # nothing committed

    flaky.failing.clear()  # ClickHouse is back
    wait_until(lambda: store.counts()["events"] == 210, 20, "every row after healing")
    wait_until(lambda: not sink.stats().paused and sink.stats().commits >= 1, 10, "resumed")
    wait_until(lambda: sum(max(o, 0) for o in committed(settings, topics, group).values()) == 21,
               10, "offsets of all 21 messages committed")  # fmt: skip
    assert sink.stats().last_error == "injected: ClickHouse is unreachable"


# the fault suite's history outage: 5 s in CI; FLYBALL_FAULT_OUTAGE_S=60 for the full one
OUTAGE_S = float(os.environ.get("FLYBALL_FAULT_OUTAGE_S", "5"))


def test_a_history_outage_loses_no_event_counted_by_event_id(
    settings: Settings,
    store: HistoryStore,
    topics: str,
    group: str,
    sink_factory: list[HistorySink],
) -> None:
    """Events keep arriving for the whole outage; after it every one is in history once
    (``uniqExact(event_id)``), and the sink resumes by itself."""
    t0 = now_ms()
    flaky = FlakyStore(store)
    cfg = SinkConfig(group_id=group, flush_interval_ms=100, backoff_min_ms=50,
                     backoff_max_ms=1_000)
    sink = HistorySink(settings, topics, flaky, cfg)
    sink_factory.append(sink.start())
    sent, start = 0, time.monotonic()
    while time.monotonic() - start < OUTAGE_S:  # 20 frames of 25 events per second
        produce(topics, settings.topic_events,
                [(f"ep{sent % 4}", frame(t0, sent * 25, 25, f"ep{sent % 4}"))])
        sent += 1
        time.sleep(0.05)
    assert store.counts()["events"] == 0 and sink.stats().paused
    healed = time.monotonic()
    flaky.failing.clear()
    wait_until(lambda: store.counts()["events"] == sent * 25, 30, "every event after the outage")
    recovery_s = time.monotonic() - healed
    print(f"history outage {OUTAGE_S:.0f} s: {sent * 25} events, all in history "
          f"{recovery_s:.2f} s after")
    db = settings.clickhouse_database
    assert store.query(f"SELECT uniqExact(event_id) FROM {db}.events")[1] == [(sent * 25,)]
    wait_until(lambda: not sink.stats().paused, 10, "resumed")
    assert recovery_s < 5  # the backoff is capped at 1 s here


def test_stop_flushes_what_was_consumed(
    settings: Settings, store: HistoryStore, topics: str, group: str
) -> None:
    t0 = now_ms()
    cfg = SinkConfig(group_id=group, flush_interval_ms=60_000)  # only stop() flushes
    sink = HistorySink(settings, topics, store, cfg).start()
    produce(topics, settings.topic_events, [("ep", frame(t0, 0, 30))])
    wait_until(lambda: sink.stats().messages == 1, 20, "consumed")
    assert store.counts()["events"] == 0
    sink.stop()
    assert store.counts()["events"] == 30
    assert sum(max(o, 0) for o in committed(settings, topics, group).values()) == 1


def deadletters(settings: Settings, bootstrap: str, n: int, timeout_s: float = 15) -> list[Any]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dl-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest"})  # fmt: skip
    c.assign([TopicPartition(settings.topic_deadletter, 0, 0)])
    out: list[Any] = []
    try:
        wait_until(lambda: out.extend(m.value() for m in c.consume(10, 0.5) if not m.error())
                   or len(out) >= n, timeout_s, f"{n} dead letters")  # fmt: skip
    finally:
        c.close()
    return [jsoncodec.loads(v) for v in out]


def test_rows_the_store_refuses_are_dead_lettered_and_the_rest_lands(
    settings: Settings,
    store: HistoryStore,
    topics: str,
    group: str,
    sink_factory: list[HistorySink],
) -> None:
    """Finding: one row stopped history for good (the batch retried forever, every partition
    paused). Here ClickHouse itself refuses two rows (a CHECK constraint: code 469) among 400,
    and a frame spans 102 days (more partitions than one INSERT block may create: code 252).
    The refused rows go to the dead-letter topic with the store's reason and no values; all
    other rows land, nothing pauses, and the offsets are committed."""
    db = settings.clickhouse_database
    store.command(f"ALTER TABLE {db}.events ADD CONSTRAINT no_poison CHECK event_id NOT LIKE "
                  "'poison%'")  # fmt: skip
    t0 = now_ms()
    good = [(f"ep{i % 4}", frame(t0, i * 100, 100, f"ep{i % 4}")) for i in range(4)]
    poison = encode_frame("gw-1", "ep0", {
        "event_id": ["poison-1", "p-ok-1", "poison-2", "p-ok-2"], "ts_ms": [t0] * 4,
        "endpoint": ["ep0"] * 4, "status": ["ok"] * 4})  # fmt: skip
    span = encode_frame("gw-1", "old", {
        "event_id": [f"d{i}" for i in range(102)],
        "ts_ms": [t0 + i * 86_400_000 for i in range(102)],  # ahead: no TTL drops them
        "endpoint": ["old"] * 102, "status": ["ok"] * 102})  # fmt: skip
    produce(topics, settings.topic_events, [*good[:2], ("ep0", poison), ("old", span), *good[2:]])
    sink = HistorySink(settings, topics, store, SinkConfig(group_id=group, flush_interval_ms=300))
    sink_factory.append(sink.start())
    wait_until(lambda: store.counts()["events"] == 400 + 2 + 102, 60, "every accepted row")
    wait_until(lambda: sum(max(o, 0) for o in committed(settings, topics, group).values()) == 6,
               10, "offsets committed")  # fmt: skip
    st = sink.stats()
    assert st.refused_rows == 2 and st.insert_failures == 0 and not st.paused
    letters = deadletters(settings, topics, 2)
    assert sorted(d["source"] for d in letters) == [
        "history:events:poison-1", "history:events:poison-2"]  # fmt: skip
    assert all("469" in d["errors"][0]["reason"] or "constraint" in d["errors"][0]["reason"].lower()
               for d in letters)  # fmt: skip
    assert all("raw_b64" not in d and d["raw_bytes"] == 0 for d in letters)
