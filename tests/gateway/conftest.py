"""Fixtures for the gateway SDK tests: a real Tansu broker (``infra.broker``), unique topics."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers module sits beside this file; this folder is not a package (it would shadow the
# top-level ``gateway`` package), so make it importable explicitly.
sys.path.insert(0, str(Path(__file__).parent))

from gw_helpers import FakeGateway, Topics, create_topics

from infra.broker import EmbeddedBroker


@pytest.fixture
def fake_gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture
def topics(broker: EmbeddedBroker) -> Topics:
    suffix = uuid.uuid4().hex[:10]
    t = Topics(broker.bootstrap, f"test.events.{suffix}", f"test.control.{suffix}")
    create_topics(broker.bootstrap, t.events, partitions=2)
    create_topics(broker.bootstrap, t.control)
    return t
