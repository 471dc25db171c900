"""Where live consumption starts, and the warm-up replay, against the real broker (Tansu)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition

from infra.broker import EmbeddedBroker
from schemas.frames import encode_columns
from streams.synthetic import steady_traffic
from streams.warmup import live_starts, replay_partitions
from tests.streams.conftest import make_settings

T0 = 1_700_000_000_000


def test_start_is_first_live_offset_else_committed_else_log_start(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = make_settings(broker, tmp_path)
    topic = settings.topic_events
    conf = settings.kafka_client_config()
    events = steady_traffic(300, T0, 3_000)
    frames = [
        encode_columns("gw", "e", events.take(np.arange(i, i + 30))) for i in range(0, 300, 30)
    ]
    # 10 frames on partition 0, 4 on partition 1, none on 2 and 3
    produce_to = [(0, f) for f in frames] + [(1, f) for f in frames[:4]]
    p = Producer(conf)
    for part, value in produce_to:
        p.produce(topic, value=value, partition=part)
    assert p.flush(30) == 0
    group = "flyball-test-group"
    c = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic, 0, 7)], asynchronous=False)
    c.close()

    starts = live_starts(conf, group, topic, [0, 1, 2, 3], known_starts={1: 2})
    # committed; the first live offset wins; nothing committed: the log start
    assert starts == {0: 7, 1: 2, 2: 0, 3: 0}

    # the replay: everything before each start, each partition in its own order
    got: dict[int, list[int]] = {}
    for part, cols in replay_partitions(conf, topic, {0: 7, 1: 2, 2: 0}, warmup_ms=60_000):
        got.setdefault(part, []).extend(cols.ts_ms.tolist())
    assert got[0] == events.ts_ms[:210].tolist()
    assert got[1] == events.ts_ms[:60].tolist()
    assert 2 not in got
    # a warm-up window shorter than the log replays only its recent past: the Kafka timestamps
    # here are all within a second, so a 0 ms window still starts at the anchor's timestamp
    recent = [len(c) for part, c in replay_partitions(conf, topic, {0: 7}, warmup_ms=0)]
    assert 0 < sum(recent) <= 210
