"""Fixtures: the real Tansu broker and the real chDB engine, started here, unique names per test.

chDB hosts one engine path per process, so every test of this process shares one chDB directory
and gets its own database (dropped afterwards); topics and consumer groups are unique per test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flyball.settings import Settings, load_settings
from infra.broker import EmbeddedBroker
from infra.history import HistoryStore

MakeSettings = Callable[..., Settings]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("FLYBALL_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def make_settings(chdb_dir: Path, tmp_path: Path) -> MakeSettings:
    """Settings with a unique database and topic names; keyword overrides win."""
    tag = uuid.uuid4().hex[:8]

    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "clickhouse_dsn": f"chdb://{chdb_dir}",
            "clickhouse_database": f"t_{tag}",
            "data_dir": tmp_path / "data",
            "topic_events": f"t{tag}.events",
            "topic_features": f"t{tag}.features",
            "topic_scores": f"t{tag}.scores",
            "topic_control": f"t{tag}.control",
            "topic_deadletter": f"t{tag}.deadletter",
        }
        return load_settings(**{**base, **overrides})

    return make


@pytest.fixture
def settings(make_settings: MakeSettings) -> Settings:
    return make_settings()


@pytest.fixture
def store(settings: Settings) -> Iterator[HistoryStore]:
    s = HistoryStore(settings)
    s.apply_ddl()
    try:
        yield s
    finally:
        s.command(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
        s.close()


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b
