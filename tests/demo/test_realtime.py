"""``sim.realtime`` against the real broker and the real gateway SDK, without a stream worker.

A directive published here on the control topic (as the worker would) must be enforced by the
live run's gateways; every attempt must reach the events topic as a request event with wall-clock
times; the run must take its scenario's time on the wall clock.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from flyball.settings import Settings, load_settings
from gateway.client import Gateway
from infra.broker import EmbeddedBroker
from infra.topics import ensure_topics
from schemas.columns import STATUS_REJECTED, EventColumns
from schemas.control import Heartbeat
from schemas.directive import Action, Directive, Reason, Scope, seal
from schemas.frames import decode_message
from sim.context import SimContext
from sim.metrics import compute
from sim.model import R_ATTEMPT, R_STATUS
from sim.realtime import ControlTap, LiveEngine, LivePolicy, Pacer
from sim.scenario import Scenario, parse_scenario

pytestmark = pytest.mark.integration

KEY = "realtime-test-key"


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture
def settings(broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch) -> Settings:
    import os

    for k in list(os.environ):
        if k.startswith("FLYBALL_"):
            monkeypatch.delenv(k)
    tag = uuid.uuid4().hex[:8]
    s = load_settings(
        kafka_bootstrap=broker.bootstrap,
        signing_key=KEY,
        topic_events=f"rt{tag}.events",
        topic_features=f"rt{tag}.features",
        topic_scores=f"rt{tag}.scores",
        topic_control=f"rt{tag}.control",
        topic_deadletter=f"rt{tag}.deadletter",
    )
    ensure_topics(s, broker.bootstrap)
    return s


def failing_scenario(duration_s: float = 2.0) -> Scenario:
    """Every first attempt fails fast (an error fault), so every request retries at once."""
    return parse_scenario(
        {
            "name": "always-failing",
            "seed": 3,
            "duration_s": duration_s,
            "gateways": 2,
            "services": [{
                "name": "llm", "slots": 8, "service_ms_median": 20, "service_ms_sigma": 0.1,
                "error_ms": 5,
                "faults": [{"kind": "error", "start_s": 0, "end_s": 60, "fraction": 1.0}],
            }],
            "tenants": [{
                "name": "acme", "agents": 10, "priority": 3, "rate_per_s": 20.0,
                "endpoints": ["llm"], "deadline_ms": 1_000, "tokens": "none",
                "retry": {"max_attempts": 3, "backoff": "fixed", "base_ms": 50,
                          "jitter": "none", "timeout_ms": 500},
            }],
        },
        "always-failing",
    )  # fmt: skip


def publish(settings: Settings, bootstrap: str, *directives: Directive) -> None:
    p = Producer(settings.kafka_client_config(bootstrap))
    now = time.time_ns() // 1_000_000
    for d in directives:
        p.produce(settings.topic_control, seal(d, settings.keyring())[1],  # type: ignore[arg-type]
                  key=d.scope.key().encode())
    p.produce(settings.topic_control, Heartbeat(now, "test").encode())
    p.flush(5)


def read_events(settings: Settings, bootstrap: str, expected: int) -> EventColumns:
    c = Consumer({**settings.kafka_client_config(bootstrap), "group.id": uuid.uuid4().hex,
                  "enable.auto.commit": "false"})
    md = c.list_topics(settings.topic_events, timeout=5)
    parts = md.topics[settings.topic_events].partitions
    c.assign([TopicPartition(settings.topic_events, p, OFFSET_BEGINNING) for p in parts])
    batches: list[EventColumns] = []
    deadline = time.monotonic() + 10
    while sum(len(b) for b in batches) < expected and time.monotonic() < deadline:
        for m in c.consume(100, 0.2):
            if m.error() is None:
                batches.append(decode_message(m.value() or b"").events)
    c.close()
    return EventColumns.concat(batches)


def test_pacer_maps_virtual_to_wall() -> None:
    slept: list[float] = []
    p = Pacer(sleep=slept.append)
    p.start()
    p.wait(500)
    assert slept and 0.45 < slept[0] <= 0.5
    assert p.virtual_ms(p.epoch_ms(1234)) == 1234
    p.t0 -= 2.0  # two seconds behind
    p.wait(0)
    assert p.max_lag_ms >= 1_999


def test_live_run_enforces_published_directive_and_ships_events(
    settings: Settings, broker: EmbeddedBroker
) -> None:
    bootstrap = broker.bootstrap
    now = time.time_ns() // 1_000_000
    shed = Directive(
        id="test-shed-retries", issued_ms=now, expires_ms=now + 60_000,
        scope=Scope(endpoint="llm", min_attempt=1),
        action=Action("shed", fraction=1.0, retry_after_ms=10),
        reason=Reason("retry_storm", 0.9, {}),
    )  # fmt: skip
    publish(settings, bootstrap, shed)
    tap = ControlTap(settings, bootstrap).start()
    gateways = [Gateway(settings, f"rt-gw-{i}", bootstrap=bootstrap).start() for i in range(2)]
    try:
        for gw in gateways:
            assert gw.wait_caught_up(5)
        assert tap.heard.wait(5)
        sc = failing_scenario()

        def make(ctx: SimContext) -> LivePolicy:
            return LivePolicy(ctx, gateways, enforce=True, name="governed", tap=tap, tag="t-")

        engine = LiveEngine(sc, make)
        t0 = time.monotonic()
        wall0 = time.time_ns() // 1_000_000
        result = engine.run()
        took = time.monotonic() - t0
        for gw in gateways:
            gw.flush(5)
    finally:
        for gw in gateways:
            gw.close()
        tap.stop()

    run_ms = sc.duration_ms + sc.max_drain_ms()
    assert run_ms / 1000 - 0.05 <= took <= run_ms / 1000 + 1.0  # paced to the wall clock
    rows = result.rows
    retries = rows[rows[:, R_ATTEMPT] >= 1]
    assert len(retries) > 10
    assert (retries[:, R_STATUS] == STATUS_REJECTED).all()  # every retry shed at the gateway
    m = compute(result)
    assert m["policy"] == "governed"
    assert m["directives_by_kind"] == {"shed": 1}
    stats = engine.live.stats()
    assert stats["rejected"] == len(retries)
    assert stats["max_lag_ms"] < 250

    events = read_events(settings, bootstrap, len(rows))
    assert len(events) == len(rows)
    assert set(events.gateway_id.tolist()) == {"rt-gw-0", "rt-gw-1"}
    assert all(str(e).startswith("t-e") for e in events.event_id.tolist())
    assert wall0 - 100 <= int(events.ts_ms.min())
    assert int(events.ts_ms.max()) <= wall0 + run_ms + 100
    assert int((events.directive_id == "test-shed-retries").sum()) == len(retries)
    assert int((events.status == STATUS_REJECTED).sum()) == len(retries)


def test_ungoverned_run_admits_everything(settings: Settings, broker: EmbeddedBroker) -> None:
    bootstrap = broker.bootstrap
    now = time.time_ns() // 1_000_000
    shed_all = Directive(
        id="test-shed-all", issued_ms=now, expires_ms=now + 60_000, scope=Scope(endpoint="llm"),
        action=Action("shed", fraction=1.0, retry_after_ms=10), reason=Reason("test", 1.0, {}),
    )  # fmt: skip
    publish(settings, bootstrap, shed_all)
    gateways = [
        Gateway(settings, f"rt-u-{i}", bootstrap=bootstrap, control=False).start() for i in range(2)
    ]
    try:
        sc = failing_scenario(1.0)

        def make(ctx: SimContext) -> LivePolicy:
            return LivePolicy(ctx, gateways, enforce=False, name="ungoverned")

        result = LiveEngine(sc, make).run()
    finally:
        for gw in gateways:
            gw.close()
    assert len(result.rows) > 0
    assert not (result.rows[:, R_STATUS] == STATUS_REJECTED).any()
    assert sum(gw.stats().events_sent for gw in gateways) == len(result.rows)
