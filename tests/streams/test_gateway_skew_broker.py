"""Fault suite: 2 s of clock skew between gateways on the same endpoints (hardening #4), on the
real broker with the real worker and history. One of four gateways stamps its events 2 s behind
the others; each gateway is its own event clock, so none of its events is late, and every event
is in history (``uniqExact(event_id)``)."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from infra.broker import EmbeddedBroker
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

SKEW_MS = 2_000


def test_two_seconds_of_gateway_skew_loses_no_event(broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = make_settings(broker, tmp_path)
    now = time.time_ns() // 1_000_000
    events = steady_traffic(20_000, now - 60_000, 20_000, seed=5, gateways=4)
    # attempts shorter than the allowed lateness, so that in-sync clocks lose nothing either
    events = replace(events, latency_ms=np.minimum(events.latency_ms, 150))
    events = events.take(np.argsort(events.ts_ms + events.latency_ms, kind="stable"))
    behind = events.gateway_id == "gw-1"
    # the rows stay in true completion order (the order they reach the broker); gw-1's clock,
    # which stamps them, runs 2 s behind
    skewed = replace(events, ts_ms=np.where(behind, events.ts_ms - SKEW_MS, events.ts_ms))
    frames = frames_in_time_order(skewed, events_per_frame=10)
    worker = WorkerProcess(settings, sink=True, log_path=tmp_path / "worker.log")
    try:
        produce(settings, settings.topic_events, frames)
        wait_until(lambda: committed_total(settings) >= len(frames), 120, "every frame governed")
        assert worker.stop() == 0, worker.log_tail()
        late = [int(n) for n in re.findall(r"(\d+) late \(their", worker.log_tail(10**6))]
        # one clock per partition turned ~24% late (4,877 of 20,000 in the same traffic, pure);
        # what is left is the trace's edge, as many as with clocks in sync (13 there)
        assert sum(late) <= 0.002 * len(events), worker.log_tail()
        h = query_history(settings, {"n": "SELECT uniqExact(event_id) FROM {db}.events"})
        assert h["n"][0][0] == len(events)
        assert int(behind.sum()) > 1_000
    finally:
        worker.kill()
