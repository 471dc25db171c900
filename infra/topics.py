"""Creating Flyball's topics (idempotent) with confluent-kafka's AdminClient."""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]
from confluent_kafka.cimpl import NewTopic

from flyball.settings import Settings
from infra.errors import InfraError
from schemas.bounds import TTL_MS

log = logging.getLogger(__name__)


def topic_partitions(settings: Settings) -> dict[str, int]:
    """Topic name -> partition count. Features and scores are keyed by endpoint like events, so
    they get the events topic's partition count; the dead-letter topic has one partition."""
    n_events = settings.topic_events_partitions
    return {
        settings.topic_events: n_events,
        settings.topic_features: n_events,
        settings.topic_scores: n_events,
        settings.topic_control: settings.topic_control_partitions,
        settings.topic_deadletter: 1,
    }


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Topic name -> the configs Flyball creates it with. The control topic is compacted (each
    episode keeps its latest message, each worker its latest heartbeat; a release's tombstone
    removes its episode) and deleted after twice the longest directive lifetime: nothing older
    can still be in force, so a gateway's replay at start is bounded by what is in force, not by
    how long the workers have run. Short segments let compaction act within minutes."""
    return {
        settings.topic_control: {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(2 * TTL_MS[1]),
            "segment.ms": "600000",
            "delete.retention.ms": "60000",
            "min.cleanable.dirty.ratio": "0.1",
        }
    }


def ensure_topics(settings: Settings, bootstrap: str, timeout_ms: int = 15_000) -> dict[str, int]:
    """Create the missing topics; return name -> partitions as the broker reports them.

    Existing topics are left as they are (a partition count that differs is logged, not changed;
    so is a control topic created before it was compacted: ``kafka-configs --alter`` it).
    """
    admin = AdminClient(dict(settings.kafka_client_config(bootstrap)))
    wanted = topic_partitions(settings)
    configs = topic_configs(settings)
    new = [
        NewTopic(name, num_partitions=n, replication_factor=settings.topic_replication,
                 config=configs.get(name, {}))
        for name, n in wanted.items()
    ]
    futures = admin.create_topics(new, request_timeout=timeout_ms / 1000)
    for name, fut in futures.items():
        try:
            fut.result()
            log.info("created topic %s (%d partitions)", name, wanted[name])
        except KafkaException as exc:
            err = exc.args[0]
            if not isinstance(err, KafkaError) or err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise InfraError(f"cannot create topic {name} on {bootstrap}: {exc}") from exc
    found = wait_for_topics(admin, list(wanted), timeout_ms)
    for name, n in found.items():
        if n != wanted[name]:
            log.warning("topic %s has %d partitions (settings say %d)", name, n, wanted[name])
    _warn_uncompacted(admin, settings.topic_control, timeout_ms)
    return found


def cleanup_policy(admin: AdminClient, topic: str, timeout_ms: int = 5_000) -> str | None:
    """The topic's ``cleanup.policy`` as the broker reports it (None if it cannot say)."""
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    try:
        cfg = admin.describe_configs([res], request_timeout=timeout_ms / 1000)[res].result()
    except (KafkaException, ValueError) as exc:
        log.debug("cannot describe %s: %s", topic, exc)
        return None
    entry = cfg.get("cleanup.policy")
    return None if entry is None else str(entry.value)


def _warn_uncompacted(admin: AdminClient, topic: str, timeout_ms: int) -> None:
    policy = cleanup_policy(admin, topic, timeout_ms)
    if policy is not None and "compact" not in policy:
        log.warning(
            "control topic %s has cleanup.policy=%s: gateways replay every heartbeat and ended "
            "episode at start; set cleanup.policy=compact,delete (see infra/topics.py)",
            topic, policy,
        )


def list_topics(settings: Settings, bootstrap: str, timeout_ms: int = 5_000) -> dict[str, int]:
    """Every topic on the broker -> its partition count."""
    admin = AdminClient(dict(settings.kafka_client_config(bootstrap)))
    md = admin.list_topics(timeout=timeout_ms / 1000)
    return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}


def wait_for_topics(admin: AdminClient, names: list[str], timeout_ms: int) -> dict[str, int]:
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        md = admin.list_topics(timeout=max(0.5, deadline - time.monotonic()))
        found = {
            n: len(md.topics[n].partitions)
            for n in names
            if n in md.topics and md.topics[n].error is None and md.topics[n].partitions
        }
        if len(found) == len(names):
            return found
        if time.monotonic() >= deadline:
            missing = sorted(set(names) - set(found))
            raise InfraError(f"topics {missing} did not appear within {timeout_ms} ms")
        time.sleep(0.05)
