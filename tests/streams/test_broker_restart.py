"""Fault suite: the broker restarts with an empty log under a running worker (hardening #8).

The new log numbers its messages from 0 again, below the offsets the worker already ingested; it
must notice (the log now ends below them too), rebuild its governor and govern the new messages
instead of skipping them as redeliveries. Counted in history by ``uniqExact(event_id)``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from infra.broker import EmbeddedBroker, free_port
from infra.topics import ensure_topics
from streams.synthetic import frames_in_time_order, steady_traffic
from tests.streams._support import (
    WorkerProcess,
    committed_total,
    produce,
    query_history,
    wait_until,
)
from tests.streams.conftest import make_settings

pytestmark = pytest.mark.integration


def test_a_broker_restarted_empty_is_noticed_and_no_new_event_is_skipped(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    now = time.time_ns() // 1_000_000
    before = steady_traffic(4_000, now - 120_000, 40_000, seed=1)
    after = steady_traffic(1_000, now - 60_000, 10_000, seed=2)
    first = EmbeddedBroker(port=port, log_path=tmp_path / "broker1.log").start()
    worker: WorkerProcess | None = None
    second: EmbeddedBroker | None = None
    try:
        settings = make_settings(first, tmp_path)
        frames = frames_in_time_order(before, events_per_frame=50)
        produce(settings, settings.topic_events, frames)
        worker = WorkerProcess(settings, sink=True, log_path=tmp_path / "worker.log")
        wait_until(lambda: committed_total(settings) >= len(frames), 90, "the first log governed")
        first.stop()
        second = EmbeddedBroker(port=port, log_path=tmp_path / "broker2.log").start()
        ensure_topics(settings, second.bootstrap)
        later = frames_in_time_order(after, events_per_frame=50)
        produce(settings, settings.topic_events, later)
        log = tmp_path / "worker.log"
        wait_until(lambda: "the broker lost its log" in log.read_text(), 120, "the reset noticed")
        wait_until(lambda: committed_total(settings) >= len(later), 90, "the new log governed")
        assert worker.stop() == 0, worker.log_tail()
        worker = None
        h = query_history(settings, {"n": "SELECT uniqExact(event_id) FROM {db}.events"})
        assert h["n"][0][0] == len(before) + len(after)
    finally:
        if worker is not None:
            worker.kill()
        for b in (second, first):
            if b is not None:
                b.stop()
