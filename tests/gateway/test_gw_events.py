"""Events: frame building round-trips through the lead's decoder; buffers are bounded."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flyball.settings import load_settings
from gateway.client import Gateway
from gateway.events import EventIds, RequestEvent, build_frames
from gateway.stats import Counters
from schemas.columns import APPLIED_CODES, FIELD_NAMES, STATUS_CODES
from schemas.frames import decode_message, encode_frame

UNREACHABLE = "127.0.0.1:9"  # discard port: nothing listens; emit only buffers

names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=8)
events = st.builds(
    RequestEvent,
    endpoint=st.sampled_from(["GET /a", "POST /b", "PUT /c/{id}"]),
    ts_ms=st.integers(1, 4_102_444_800_000),
    status=st.sampled_from([0, 1, 2, 3, "ok", "error", "timeout", "rejected"]),
    latency_ms=st.integers(0, 86_400_000),
    tenant=names,
    agent_id=names,
    attempt=st.integers(0, 10_000),
    request_id=names,
    root_id=names,
    parent_id=names,
    depth=st.integers(0, 1_000),
    priority=st.integers(0, 9),
    tokens_in=st.integers(0, 2**40),
    tokens_out=st.integers(0, 2**40),
    directive_id=st.just("") | names,
    applied=st.sampled_from([0, 1, 2, "", "shed", "reroute"]),
)


def _code(v: Any, codes: dict[str, int]) -> int:
    return codes[v] if isinstance(v, str) else int(v)


@settings(max_examples=50, deadline=None)
@given(st.lists(events | events.map(lambda e: e.as_dict()), max_size=40), st.integers(1, 7))
def test_frames_round_trip_through_the_decoder(evs: list[Any], frame_max: int) -> None:
    frames, invalid = build_frames(evs, "gw-1", EventIds("p-"), frame_max)
    assert invalid == 0
    decoded: list[tuple[Any, ...]] = []
    for key, cols in frames:
        n = len(cols["endpoint"])
        assert 1 <= n <= frame_max and set(cols["endpoint"]) == {key}
        result = decode_message(encode_frame("gw-1", key, cols))
        assert result.errors == []
        columns = result.events.as_dict()
        decoded.extend(zip(*(columns[f].tolist() for f in FIELD_NAMES), strict=True))
    assert len(decoded) == len(evs)
    ids = [row[FIELD_NAMES.index("event_id")] for row in decoded]
    assert len(set(ids)) == len(ids) and all(i.startswith("p-") for i in ids)
    want = sorted(
        (
            e["endpoint"] if isinstance(e, dict) else e.endpoint,
            (e["ts_ms"] if isinstance(e, dict) else e.ts_ms),
            _code(e["status"] if isinstance(e, dict) else e.status, STATUS_CODES),
            _code(e["applied"] if isinstance(e, dict) else e.applied, APPLIED_CODES),
            e["tenant"] if isinstance(e, dict) else e.tenant,
        )
        for e in evs
    )
    got = sorted(
        tuple(r[FIELD_NAMES.index(f)] for f in ("endpoint", "ts_ms", "status", "applied", "tenant"))
        for r in decoded
    )
    assert got == want
    assert {r[FIELD_NAMES.index("gateway_id")] for r in decoded} <= {"gw-1"}


def test_invalid_events_are_dropped_and_counted() -> None:
    evs: list[Any] = [
        {"endpoint": "", "ts_ms": 1},
        {"ts_ms": 1},
        {"endpoint": "GET /", "ts_ms": 1, "status": "exploded"},
        {"endpoint": "GET /", "ts_ms": 1},
        "not an event",
    ]
    frames, invalid = build_frames(evs, "gw", EventIds(), 10)
    assert invalid == 4 and len(frames) == 1


def test_another_gateway_id_is_kept_as_a_column() -> None:
    evs = [RequestEvent("GET /", 1, gateway_id="edge-7"), RequestEvent("GET /", 2)]
    (_, cols), = build_frames(evs, "gw", EventIds(), 10)[0]
    assert cols["gateway_id"] == ["edge-7", "gw"]


def test_emit_never_blocks_and_bounds_memory() -> None:
    gw = Gateway(
        load_settings(kafka_bootstrap=UNREACHABLE), "gw-mem", control=False,
        max_buffered_events=1_000, linger_ms=10_000,
    )
    try:
        t0 = time.perf_counter()
        for i in range(5_000):
            gw.emit({"endpoint": "GET /", "ts_ms": 1 + i})
        assert time.perf_counter() - t0 < 1.0
        s = gw.stats()
        assert s.events_emitted == 5_000
        assert s.events_dropped == 4_000 and s.events_buffered == 1_000
    finally:
        gw.close(timeout_s=0.2)
    s = gw.stats()
    assert s.events_dropped + s.events_sent == 5_000  # nothing unaccounted for


def test_event_ids_are_unique_and_prefixed() -> None:
    ids = EventIds()
    got = {ids.next() for _ in range(10_000)}
    assert len(got) == 10_000 and all(i.startswith(ids.prefix) for i in got)
    assert EventIds().prefix != ids.prefix


def test_stats_and_prometheus_text() -> None:
    gw = Gateway(load_settings(kafka_bootstrap=UNREACHABLE), "gw-prom", control=False)
    try:
        gw.admit("GET /")
        text = gw.metrics_text().decode()
    finally:
        gw.close(timeout_s=0.1)
    assert 'flyball_gateway_decisions_total{gateway_id="gw-prom",kind="admit"} 1.0' in text
    assert 'flyball_gateway_governor_state{gateway_id="gw-prom",state="connecting"} 1.0' in text
    assert "flyball_gateway_events_dropped_total" in text
    assert isinstance(Counters().directives_rejected, dict)


def test_bench_runs_and_reports_every_number() -> None:
    from gateway.bench import run_gateway_bench

    r = run_gateway_bench(n_admit=5_000, n_emit=5_000, n_http=100)
    assert set(r) >= {"admit_ns_p50", "admit_ns_p99", "emit_ns_p50", "middleware_overhead_ratio"}
    assert r["directives_in_force"] == 10
    # Loose sanity bounds only (shared CI machines are noisy); targets are checked by hand.
    assert 0 < r["admit_ns_p50"] < 50_000 and 0 < r["emit_ns_p50"] < 50_000
    assert 0.5 < r["middleware_overhead_ratio"] < 3.0
