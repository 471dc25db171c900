"""Against the real embedded broker (Tansu): the control loop end to end, events, fail-open."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, TopicPartition
from gw_helpers import (
    SIGNING_KEY,
    Topics,
    create_topics,
    make_directive,
    now_ms,
    signed,
    wait_until,
)

from flyball.settings import load_settings
from gateway.client import Gateway
from infra.broker import EmbeddedBroker
from schemas.control import Heartbeat
from schemas.directive import Action, Directive, Scope
from schemas.frames import decode_message

pytestmark = pytest.mark.integration

EP = "POST /v1/chat"


def _rejects(gw: Gateway, endpoint: str) -> Callable[[], bool]:
    return lambda: gw.admit(endpoint).kind == "reject"


def _has_directive(gw: Gateway) -> Callable[[], bool]:
    return lambda: len(gw.directives()) == 1


def heartbeat() -> bytes:
    return Heartbeat(now_ms(), "test-worker").encode()


def start_gateway(topics: Topics, gateway_id: str = "gw-1", **kw: object) -> Gateway:
    gw = Gateway(topics.settings(SIGNING_KEY), gateway_id, **kw).start()  # type: ignore[arg-type]
    assert wait_until(lambda: gw.wait_caught_up(0.05), 10.0)
    return gw


def measure_enforcement_ms(topics: Topics, gw: Gateway, d: Directive,
                           enforced: Callable[[], bool]) -> float:
    t0 = time.perf_counter()
    topics.publish(signed(d), key=d.scope.key().encode())
    assert wait_until(enforced, 5.0, step_s=0.005), "directive never enforced"
    return (time.perf_counter() - t0) * 1000


def test_directive_is_enforced_within_100_ms_and_stops_at_expiry(topics: Topics) -> None:
    gw = start_gateway(topics)
    try:
        topics.publish(heartbeat())
        assert wait_until(lambda: gw.governor_state == "ok")
        elapsed = []
        for attempt in range(2):  # one retry of the whole measurement against scheduler noise
            ep = f"{EP}/{attempt}"
            d = make_directive(
                Action("shed", fraction=1.0, retry_after_ms=1_000), Scope(endpoint=ep), ttl_ms=1_500
            )
            assert gw.admit(ep).kind == "admit"
            elapsed.append(
                measure_enforcement_ms(topics, gw, d, _rejects(gw, ep))
            )
            if elapsed[-1] <= 100:
                break
        print(f"publish -> enforced: {elapsed} ms")
        assert min(elapsed) <= 100, elapsed
        # ... and it stops applying at its expiry (no release needed).
        topics.publish(heartbeat())
        assert wait_until(lambda: gw.admit(ep).kind == "admit", 5.0)
        assert now_ms() >= d.expires_ms
        s = gw.stats()
        assert s.directives_applied >= 1 and s.governor_state == "ok"
    finally:
        gw.close()


def test_release_and_forged_directives(topics: Topics) -> None:
    gw = start_gateway(topics)
    try:
        forged = signed(make_directive(Action("shed"), Scope(endpoint="GET /forged")),
                        b"not the key, 16+ bytes")
        unsigned = make_directive(Action("shed"), Scope(endpoint="GET /unsigned")).encode()
        good = signed(make_directive(Action("shed"), Scope(endpoint="GET /good"), id="good"))
        topics.publish(forged, unsigned, b"{garbage", good)
        assert wait_until(lambda: gw.admit("GET /good").kind == "reject")
        assert gw.admit("GET /forged").kind == "admit"
        assert gw.admit("GET /unsigned").kind == "admit"
        rejected = gw.stats().directives_rejected
        assert (rejected["forged"], rejected["unsigned"], rejected["malformed"]) == (1, 1, 1)
        release = signed(
            make_directive(Action("release"), Scope(endpoint="GET /good"), id="good")
        )
        topics.publish(release)
        assert wait_until(lambda: gw.admit("GET /good").kind == "admit")
        assert gw.stats().directives_released == 1
    finally:
        gw.close()


def test_a_failed_control_reader_is_restarted_and_governs_again(
    topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = start_gateway(topics)
    try:
        listener = gw._listener
        assert listener is not None and gw.stats().control_listener_up
        real = listener._assign_new_partitions
        failures = [RuntimeError("metadata bug")]

        def flaky(consumer: Consumer) -> None:
            if failures:
                raise failures.pop()
            real(consumer)

        listener._assigned = set()  # the reader looks for partitions again at once
        monkeypatch.setattr(listener, "_assign_new_partitions", flaky)
        listener._refresh_ms = 0
        assert wait_until(lambda: gw.stats().control_listener_restarts == 1, 5.0)
        topics.publish(signed(make_directive(Action("shed"), Scope(endpoint="GET /after"))))
        assert wait_until(lambda: gw.admit("GET /after").kind == "reject", 10.0)
        s = gw.stats()
        assert s.control_listener_up and s.control_listener_restarts == 1
    finally:
        gw.close()


def test_a_restarted_gateway_rebuilds_the_set_in_force(topics: Topics) -> None:
    d = signed(make_directive(Action("defer", hold_ms=5), Scope(endpoint="GET /r")))
    old = signed(make_directive(Action("shed"), Scope(endpoint="GET /old"), ttl_ms=1))
    topics.publish(old, d, heartbeat())
    time.sleep(0.01)
    gw = start_gateway(topics)
    try:
        assert wait_until(lambda: gw.admit("GET /r").kind == "defer")
        assert gw.admit("GET /old").kind == "admit"
        assert gw.stats().directives_rejected["expired"] == 1
    finally:
        gw.close()


def test_silent_governor_is_reported_and_the_gateway_fails_open(topics: Topics) -> None:
    gw = start_gateway(topics, governor_silence_ms=400)
    try:
        d = make_directive(Action("shed", fraction=1.0), Scope(endpoint=EP), ttl_ms=60_000)
        topics.publish(signed(d))
        assert wait_until(lambda: gw.admit(EP).kind == "reject")
        for _ in range(4):  # heartbeats keep it enforced
            topics.publish(heartbeat())
            time.sleep(0.1)
            assert gw.admit(EP).kind == "reject" and gw.governor_state == "ok"
        # Silence: unreachable within silence + one tick, and everything is admitted.
        assert wait_until(lambda: gw.stats().governor_unreachable, 3.0)
        assert wait_until(lambda: gw.admit(EP).kind == "admit", 1.0)
        s = gw.stats()
        assert s.failing_open and s.directives_in_force == 1
        assert b"flyball_gateway_governor_unreachable" in gw.metrics_text()
        # The governor comes back: enforcement resumes.
        topics.publish(heartbeat())
        assert wait_until(lambda: gw.admit(EP).kind == "reject", 3.0)
    finally:
        gw.close()


def test_four_gateways_share_one_global_rate(topics: Topics) -> None:
    rate, burst, n = 200.0, 8.0, 4
    ids = [f"gw-{i}" for i in range(n)]
    gws = [start_gateway(topics, gid, governor_silence_ms=60_000) for gid in ids]
    try:
        action = Action(
            "throttle", rate_per_s=rate, burst=burst, shares=tuple((g, 1 / n) for g in ids)
        )
        topics.publish(signed(make_directive(action, Scope(endpoint=EP))))
        assert all(wait_until(_has_directive(g)) for g in gws)
        counts = [0] * n
        stop = threading.Event()
        measuring = threading.Event()

        def hammer(i: int) -> None:
            gw = gws[i]
            while not stop.is_set():
                if gw.admit(EP).kind == "admit" and measuring.is_set():
                    counts[i] += 1
                time.sleep(0.0005)

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # drain the initial bursts
        measuring.set()
        t0 = time.perf_counter()
        time.sleep(2.5)
        measuring.clear()
        elapsed = time.perf_counter() - t0
        stop.set()
        for t in threads:
            t.join()
        total_rate = sum(counts) / elapsed
        assert total_rate == pytest.approx(rate, rel=0.10), (total_rate, counts)
        for c in counts:  # each holds its quarter
            assert c / elapsed == pytest.approx(rate / n, rel=0.15), counts
    finally:
        for gw in gws:
            gw.close()


def test_events_reach_the_topic_as_frames(topics: Topics) -> None:
    gw = start_gateway(topics)
    try:
        for i in range(1_200):
            gw.emit({"endpoint": f"GET /e{i % 3}", "status": "ok", "tenant": "t", "attempt": 0})
        assert gw.flush(10) == 0
        assert wait_until(lambda: gw.stats().events_sent == 1_200, 5.0)
    finally:
        gw.close()
    c = Consumer(
        {"bootstrap.servers": topics.bootstrap, "group.id": "t", "enable.auto.commit": False}
    )
    try:
        c.assign([TopicPartition(topics.events, p, 0) for p in range(2)])
        rows = 0
        deadline = time.monotonic() + 10
        while rows < 1_200 and time.monotonic() < deadline:
            for m in c.consume(100, 0.2):
                if m.error() is None:
                    result = decode_message(m.value() or b"")
                    assert result.errors == [] and set(result.events.gateway_id) == {"gw-1"}
                    assert len(set(result.events.endpoint)) == 1
                    assert m.key() == result.events.endpoint[0].encode()
                    rows += len(result.events)
        assert rows == 1_200
    finally:
        c.close()


def test_broker_down_requests_keep_flowing_and_drops_are_counted() -> None:
    with EmbeddedBroker() as own:
        create_topics(own.bootstrap, "ev", "ctl")
        settings = load_settings(
            kafka_bootstrap=own.bootstrap, topic_events="ev", topic_control="ctl"
        )
        gw = Gateway(
            settings, "gw-down", governor_silence_ms=500, max_buffered_events=2_000,
            delivery_timeout_ms=1_000, max_queued_frames=4, linger_ms=20,
        ).start()
        try:
            for i in range(100):
                gw.emit({"endpoint": "GET /", "ts_ms": now_ms(), "request_id": str(i)})
            assert gw.flush(5) == 0 and gw.stats().events_sent == 100
            own.stop(timeout_ms=200)  # SIGTERM, then SIGKILL: a broker that goes away
            worst_ns = 0
            for i in range(20_000):
                t0 = time.perf_counter_ns()
                d = gw.admit("GET /")
                gw.emit({"endpoint": "GET /", "ts_ms": now_ms(), "request_id": str(i)})
                worst_ns = max(worst_ns, time.perf_counter_ns() - t0)
                assert d.kind == "admit"
                if i % 1_000 == 0:
                    time.sleep(0.02)
            assert wait_until(lambda: gw.stats().events_dropped > 0, 5.0)
            assert wait_until(lambda: gw.stats().governor_state == "unreachable", 3.0)
            assert worst_ns < 50_000_000, worst_ns  # never blocked on the broker
        finally:
            gw.close(timeout_s=0.5)
        s = gw.stats()
        assert s.events_sent + s.events_dropped == s.events_emitted == 20_100
