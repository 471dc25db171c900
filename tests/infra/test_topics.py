"""The control topic is compacted and bounded in time; readers take its tombstones in stride."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka.admin import AdminClient

from flyball.settings import Settings
from infra.broker import EmbeddedBroker
from infra.topics import cleanup_policy, ensure_topics
from schemas.bounds import TTL_MS


def test_the_control_topic_is_compacted_and_deleted_after_twice_the_longest_lifetime(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    s = settings.with_topic_prefix("compacted", kafka_bootstrap=broker.bootstrap)
    ensure_topics(s, broker.bootstrap)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert cleanup_policy(admin, s.topic_control) == "compact,delete"
    assert cleanup_policy(admin, s.topic_events) != "compact,delete"  # events: the replay log
    from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

    res = ConfigResource(ConfigResource.Type.TOPIC, s.topic_control)
    cfg = admin.describe_configs([res])[res].result()
    assert int(cfg["retention.ms"].value) == 2 * TTL_MS[1]


def test_an_existing_uncompacted_control_topic_is_reported(
    settings: Settings, broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    from confluent_kafka.cimpl import NewTopic

    s = settings.with_topic_prefix("legacy", kafka_bootstrap=broker.bootstrap)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(s.topic_control, 1, 1, config={"cleanup.policy": "delete"})])[
        s.topic_control
    ].result()
    with caplog.at_level(logging.WARNING, logger="infra.topics"):
        ensure_topics(s, broker.bootstrap)
    assert any("cleanup.policy=delete" in r.getMessage() for r in caplog.records)
