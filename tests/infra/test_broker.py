"""The embedded broker (Tansu): start, topics, produce/consume with confluent-kafka, stop."""

from __future__ import annotations

import os
import socket
import uuid

import pytest
from confluent_kafka import Consumer

from flyball.settings import Settings
from infra.broker import EmbeddedBroker
from infra.topics import ensure_topics, list_topics, topic_partitions
from tests.infra._support import produce

pytestmark = pytest.mark.integration


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_broker_topics_produce_consume_stop(settings: Settings) -> None:
    broker = EmbeddedBroker().start()
    pid = broker.pid
    assert pid is not None
    try:
        assert port_open(broker.port)
        created = ensure_topics(settings, broker.bootstrap)
        assert created == topic_partitions(settings)
        assert created[settings.topic_events] == settings.topic_events_partitions
        assert ensure_topics(settings, broker.bootstrap) == created  # idempotent
        listed = list_topics(settings, broker.bootstrap)
        assert {k: listed[k] for k in created} == created

        msgs = [(f"k{i % 3}", f"v{i}".encode()) for i in range(20)]
        produce(broker.bootstrap, settings.topic_events, msgs)
        consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": f"g-{uuid.uuid4().hex[:8]}",
                "session.timeout.ms": settings.kafka_session_timeout_ms,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([settings.topic_events])
        got: list[bytes] = []
        for _ in range(200):
            for m in consumer.consume(100, timeout=0.1):
                assert m.error() is None
                got.append(m.value() or b"")
            if len(got) >= len(msgs):
                break
        consumer.close()
        assert sorted(got) == sorted(v for _, v in msgs)
    finally:
        broker.stop()
    assert not port_open(broker.port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
