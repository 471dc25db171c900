"""Rebuilding a partition's window state from the log before it may issue directives.

A worker that is assigned a partition (start, restart, rebalance) starts consuming at the
committed offset with an empty governor. Before the first live batch, the shell replays the
partition from ``offsets_for_times(first_live_timestamp - warmup_ms)`` up to the first live
offset into a fresh governor whose outputs are discarded ("warm-up": no directive, feature or score
is published for replayed events; they were published by the previous owner). Episodes that were
open are thereby re-derived with the same onset, hence the same deterministic directive id: the
next live refresh replaces the gateways' cached directive instead of adding a second one.

The replay uses its own confluent-kafka consumer (manual ``assign``, no group, no commits), so the
Faust consumer's position and group membership are untouched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Final

from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from schemas.columns import EventColumns
from schemas.frames import decode_message
from streams.errors import WarmupError

log = logging.getLogger(__name__)

REPLAY_CHUNK_ROWS: Final = 50_000


def replay_partition(
    kafka_conf: dict[str, str],
    topic: str,
    partition: int,
    since_ts_ms: int,
    until_offset: int,
    timeout_ms: int = 30_000,
) -> Iterator[EventColumns]:
    """Valid events of ``topic[partition]`` from the first offset at or after ``since_ts_ms``
    (message timestamp) up to, not including, ``until_offset``; in chunks of ~50k rows.

    Bad messages are skipped (their dead letters were sent when they were first consumed).
    """
    if until_offset <= 0:
        return
    conf: dict[str, str | int | bool] = {
        **kafka_conf,
        "group.id": f"flyball-warmup-{topic}-{partition}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }
    consumer = Consumer(conf)
    deadline = time.monotonic() + timeout_ms / 1000
    try:
        found = consumer.offsets_for_times(
            [TopicPartition(topic, partition, since_ts_ms)], timeout=timeout_ms / 1000
        )
        start = found[0].offset
        if start == OFFSET_END or start < 0 or start >= until_offset:
            return
        consumer.assign([TopicPartition(topic, partition, start)])
        chunk: list[EventColumns] = []
        rows = 0
        offset = start
        while offset < until_offset:
            if time.monotonic() > deadline:
                raise WarmupError(
                    f"replay of {topic}[{partition}] {start}..{until_offset} timed out at {offset}"
                )
            for msg in consumer.consume(500, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        offset = max(offset, until_offset)  # nothing more to read
                        break
                    raise WarmupError(f"replay of {topic}[{partition}]: {err}")
                at = msg.offset() or 0
                offset = at + 1
                if at >= until_offset:
                    break
                events = decode_message(msg.value() or b"").events
                if len(events):
                    chunk.append(events)
                    rows += len(events)
                if rows >= REPLAY_CHUNK_ROWS:
                    yield EventColumns.concat(chunk)
                    chunk, rows = [], 0
        if chunk:
            yield EventColumns.concat(chunk)
    except KafkaException as exc:
        raise WarmupError(f"replay of {topic}[{partition}]: {exc}") from exc
    finally:
        consumer.close()
