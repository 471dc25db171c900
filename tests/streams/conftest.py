"""Fixtures: one real Tansu broker for the module, unique topics/database/chDB dir per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flyball.settings import Settings, load_settings
from infra.broker import EmbeddedBroker
from infra.topics import ensure_topics


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as b:
        yield b


def make_settings(broker: EmbeddedBroker, base: Path, **overrides: object) -> Settings:
    for key in list(os.environ):
        if key.startswith("FLYBALL_"):
            del os.environ[key]
    tag = uuid.uuid4().hex[:8]
    values: dict[str, object] = {
        "kafka_bootstrap": broker.bootstrap,
        "clickhouse_dsn": f"chdb://{base / 'history'}",
        "clickhouse_database": f"s_{tag}",
        "data_dir": base / "data",
        "topic_events": f"s{tag}.events",
        "topic_features": f"s{tag}.features",
        "topic_scores": f"s{tag}.scores",
        "topic_control": f"s{tag}.control",
        "topic_deadletter": f"s{tag}.deadletter",
        "signing_key": "test-signing-key",
        **overrides,
    }
    settings = load_settings(**values)
    ensure_topics(settings, broker.bootstrap)
    return settings
