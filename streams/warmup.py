"""Rebuilding the worker's window state from the log before it may issue directives.

A worker that is assigned partitions (start, restart, rebalance) consumes each from its committed
offset. Before its first live batch, the shell builds a fresh governor and replays every assigned
partition's recent past into it ("warm-up": no directive, feature or score is published for
replayed events; they were published by the previous owner): for partition ``p`` whose live
consumption starts at offset ``u``, the messages from ``offsets_for_times(ts(u - 1) - warmup_ms)``
up to ``u`` (``ts`` is the Kafka timestamp). Episodes that were open are thereby re-derived with
the same onset, hence the same deterministic directive id: the next live refresh replaces the
gateways' cached directive instead of adding a second one.

The replay uses its own confluent-kafka consumer (manual ``assign``, no group membership, no
commits), so the Faust consumer's position and group membership are untouched. Where live
consumption starts is read the same way: the first offset of a partition in the first live batch,
else the group's committed offset (``committed_offsets``; the log start when nothing is committed,
as the worker's ``auto.offset.reset`` is ``earliest``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Final

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from schemas.columns import EventColumns
from schemas.eventtime import bound_by_send_time
from schemas.frames import decode_message
from streams.errors import WarmupError

log = logging.getLogger(__name__)

REPLAY_CHUNK_ROWS: Final = 50_000


def _consumer(kafka_conf: dict[str, str], group_id: str) -> Consumer:
    return Consumer(
        {
            **kafka_conf,
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )


def live_starts(
    kafka_conf: dict[str, str],
    group_id: str,
    topic: str,
    partitions: Iterable[int],
    known_starts: dict[int, int],
    timeout_ms: int = 30_000,
) -> dict[int, int]:
    """Where live consumption of each partition starts: ``known_starts``, else ``group_id``'s
    committed offset, else the log start.

    The group's offsets are read with the admin API, never by a consumer configured with the
    group's id: such a consumer takes part in the group's coordination, and Tansu then stalls
    the group's members after a rebalance (seen in the two-worker test).
    """
    parts = sorted(set(partitions) | set(known_starts))
    timeout_s = timeout_ms / 1000
    ask = [TopicPartition(topic, p) for p in parts if p not in known_starts]
    try:
        committed: dict[int, int] = {}
        if ask:
            admin = AdminClient(dict(kafka_conf))
            request = [ConsumerGroupTopicPartitions(group_id, ask)]
            futures = admin.list_consumer_group_offsets(request, request_timeout=timeout_s)
            answer = futures[group_id].result(timeout=timeout_s)
            committed = {tp.partition: tp.offset for tp in answer.topic_partitions or []}
        consumer = _consumer(kafka_conf, f"flyball-warmup-{topic}")
        try:
            out: dict[int, int] = {}
            for p in parts:
                start = known_starts.get(p, committed.get(p, -1))
                if start < 0:
                    low, _ = consumer.get_watermark_offsets(
                        TopicPartition(topic, p), timeout=timeout_s
                    )
                    start = low
                out[p] = start
            return out
        finally:
            consumer.close()
    except (KafkaException, TimeoutError) as exc:
        raise WarmupError(f"offsets of {topic}{parts}: {exc}") from exc


def replay_partitions(
    kafka_conf: dict[str, str],
    topic: str,
    until: dict[int, int],
    warmup_ms: int,
    timeout_ms: int = 30_000,
) -> Iterator[tuple[int, EventColumns]]:
    """``(partition, events)`` chunks (~50k rows) of the valid events of each ``topic[p]`` from
    ``warmup_ms`` before its message at ``until[p] - 1`` up to, not including, ``until[p]``.

    Each partition's chunks come in its log order; partitions are interleaved as they arrive.
    Bad messages are skipped (their dead letters were sent when they were first consumed).
    """
    wanted = {p: u for p, u in until.items() if u > 0}
    if not wanted:
        return
    deadline = time.monotonic() + timeout_ms / 1000
    consumer = _consumer(kafka_conf, f"flyball-warmup-{topic}")
    try:
        anchors = _timestamps_at(consumer, topic, {p: u - 1 for p, u in wanted.items()}, deadline)
        if not anchors:
            return
        found = consumer.offsets_for_times(
            [TopicPartition(topic, p, ts - warmup_ms) for p, ts in anchors.items()],
            timeout=max(0.1, deadline - time.monotonic()),
        )
        starts = {tp.partition: tp.offset for tp in found if 0 <= tp.offset < wanted[tp.partition]}
        if not starts:
            return
        consumer.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
        open_parts = set(starts)
        chunks: dict[int, list[EventColumns]] = {p: [] for p in starts}
        rows = dict.fromkeys(starts, 0)
        while open_parts:
            _check(deadline, f"replay of {topic}{sorted(open_parts)} timed out")
            for msg in consumer.consume(500, timeout=0.5):
                p = msg.partition() or 0
                if _is_eof(msg, topic):
                    open_parts.discard(p)
                    continue
                at = msg.offset() or 0
                if p not in open_parts or at >= wanted[p]:
                    open_parts.discard(p)
                    continue
                if at + 1 >= wanted[p]:
                    open_parts.discard(p)
                # the live path's bound (schemas.eventtime): a warm restart re-derives the same
                events, _ = bound_by_send_time(
                    decode_message(msg.value() or b"").events, msg.timestamp()[1]
                )
                if len(events):
                    chunks[p].append(events)
                    rows[p] += len(events)
                if rows[p] >= REPLAY_CHUNK_ROWS:
                    yield p, EventColumns.concat(chunks[p])
                    chunks[p], rows[p] = [], 0
        for p, parts in chunks.items():
            if parts:
                yield p, EventColumns.concat(parts)
    except KafkaException as exc:
        raise WarmupError(f"replay of {topic}: {exc}") from exc
    finally:
        consumer.close()


def _timestamps_at(
    consumer: Consumer, topic: str, offsets: dict[int, int], deadline: float
) -> dict[int, int]:
    """Kafka timestamp (ms) of the message at each ``offsets[p]``; partitions whose message is
    gone (retention) are left out."""
    consumer.assign([TopicPartition(topic, p, o) for p, o in offsets.items()])
    out: dict[int, int] = {}
    pending = set(offsets)
    while pending:
        _check(deadline, f"reading {topic}{sorted(pending)} at {offsets} timed out")
        for msg in consumer.consume(len(pending), timeout=0.5):
            p = msg.partition() or 0
            if _is_eof(msg, topic):
                pending.discard(p)
            elif p in pending:
                pending.discard(p)
                if msg.offset() == offsets[p]:
                    out[p] = msg.timestamp()[1]
                else:
                    log.info("%s[%d]@%d is gone; nothing to replay", topic, p, offsets[p])
    consumer.unassign()
    return out


def _is_eof(msg: Message, topic: str) -> bool:
    err = msg.error()
    if err is None:
        return False
    if err.code() == KafkaError._PARTITION_EOF:
        return True
    raise WarmupError(f"replay of {topic}[{msg.partition()}]: {err}")


def _check(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise WarmupError(what)
