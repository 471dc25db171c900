"""The worker's output producer: librdkafka (confluent-kafka) behind a small asyncio face.

Features, scores, directives, dead letters and heartbeats go out through it rather than through
Faust's aiokafka producer: a ``produce`` is a C call of about a microsecond, where an awaited
aiokafka ``send`` costs tens of microseconds of Python per message (tens of thousands of feature
records a minute on a busy worker). ``send`` never drops: when librdkafka's queue is full it
serves delivery reports and tries again. ``flush`` (the checkpoint's "producer flushed" step)
waits in a thread until every message is acknowledged and raises if any delivery failed, so the
checkpoint does not ack input whose outputs were lost.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from streams.errors import StreamsError

log = logging.getLogger(__name__)
_PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)


class OutputProducer:
    def __init__(self, kafka_conf: dict[str, str], linger_ms: int = 5) -> None:
        conf: dict[str, Any] = {
            "acks": "all",  # Settings.kafka_output_config: acks=all, idempotent unless disabled
            "enable.idempotence": "true",
            **kafka_conf,
            "linger.ms": linger_ms,
            "log_level": 3,
        }
        self._conf = conf
        self._producer = Producer(conf)
        self._failed = 0
        self._last_error = ""

    def renew(self) -> int:
        """Drop what is queued and start a new producer: after the broker lost its log it also
        lost the idempotent producer's state, so the old producer cannot deliver again. Returns
        how many queued outputs were dropped (outputs of the lost log's events)."""
        pending = len(self._producer)
        self._producer.purge(in_queue=True, in_flight=True, blocking=False)
        self._producer.flush(0)
        self._producer = Producer(self._conf)
        self._failed = 0
        return pending

    def send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.05)  # queue full: serve delivery reports, then retry
        self._producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None and err.code() in _PURGED:
            return  # dropped on purpose by ``renew`` (counted there)
        if err is not None:
            self._failed += 1
            self._last_error = f"{msg.topic()}: {err.str()}"

    async def flush(self, timeout_s: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        left = await loop.run_in_executor(None, self._producer.flush, timeout_s)
        failed, self._failed = self._failed, 0
        if left:
            raise StreamsError(f"{left} output messages not acknowledged within {timeout_s} s")
        if failed:
            raise StreamsError(f"{failed} output messages failed: {self._last_error}")

    def close(self) -> None:
        self._producer.flush(5)
