"""Event/frame codec: round trips and what happens to every kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.columns import FIELD_NAMES, STATUS_CODES, EventColumns
from schemas.frames import decode_message, encode_columns, encode_event, encode_frame

TS0 = 1_700_000_000_000

text = st.text(min_size=1, max_size=12)
row = st.fixed_dictionaries(
    {
        "event_id": text,
        "gateway_id": text,
        "ts_ms": st.integers(1, 4_102_444_800_000),
        "latency_ms": st.integers(0, 86_400_000),
        "tenant": st.text(max_size=8),
        "agent_id": st.text(max_size=8),
        "endpoint": text,
        "status": st.integers(0, 3),
        "attempt": st.integers(0, 50),
        "request_id": st.text(max_size=8),
        "root_id": st.text(max_size=8),
        "parent_id": st.text(max_size=8),
        "depth": st.integers(0, 20),
        "priority": st.integers(0, 9),
        "tokens_in": st.integers(0, 10**9),
        "tokens_out": st.integers(0, 10**9),
        "directive_id": st.text(max_size=8),
        "applied": st.integers(0, 4),
    }
)


def _columns(rows: list[dict[str, object]]) -> dict[str, list[object]]:
    return {name: [r[name] for r in rows] for name in FIELD_NAMES}


@settings(max_examples=60, deadline=None)
@given(st.lists(row, max_size=30))
def test_frame_round_trip(rows: list[dict[str, object]]) -> None:
    result = decode_message(encode_frame("gw", "k", _columns(rows)))
    assert result.errors == []
    assert len(result.events) == len(rows)
    for name in FIELD_NAMES:
        assert getattr(result.events, name).tolist() == [r[name] for r in rows]


@settings(max_examples=40, deadline=None)
@given(st.lists(row, min_size=1, max_size=20))
def test_encode_columns_round_trip(rows: list[dict[str, object]]) -> None:
    events = EventColumns.from_arrays(_columns(rows))
    back = decode_message(encode_columns("gw", "k", events)).events
    for name in FIELD_NAMES:
        assert np.array_equal(getattr(back, name), getattr(events, name))


@settings(max_examples=40, deadline=None)
@given(row)
def test_single_event_round_trip(r: dict[str, object]) -> None:
    result = decode_message(encode_event(r))
    assert result.errors == []
    assert {k: getattr(result.events, k)[0] for k in FIELD_NAMES} == r


def test_plain_json_event_with_names_and_defaults() -> None:
    """What a kcat user would produce: status by name, most fields left out."""
    msg = b'{"ts_ms": 1700000000000, "endpoint": "POST /v1/chat", "status": "timeout"}'
    result = decode_message(msg)
    assert result.errors == []
    assert result.events.status.tolist() == [STATUS_CODES["timeout"]]
    assert result.events.tenant.tolist() == [""]
    # no event_id given: a deterministic one is derived, so a replay dedupes the same
    again = decode_message(msg)
    assert result.events.event_id[0] == again.events.event_id[0] != ""


def test_frame_gateway_id_fills_column() -> None:
    result = decode_message(
        encode_frame("gw-7", "k", {"ts_ms": [TS0], "endpoint": ["/a"], "status": [0]})
    )
    assert result.events.gateway_id.tolist() == ["gw-7"]


@pytest.mark.parametrize(
    ("message", "where", "reason_part"),
    [
        (b"\xff\xfe not json", "message", "not JSON"),
        (b"[1, 2]", "message", "expected a JSON object"),
        (b'{"v": 2, "ts_ms": 1, "endpoint": "a", "status": 0}', "v", "unsupported version"),
        (b'{"kind": "parcel"}', "kind", "unknown kind"),
        (b'{"kind": "frame", "n": 2}', "cols", "no 'cols'"),
        (b'{"kind": "frame", "n": 2, "cols": {"ts_ms": [1]}}', "ts_ms", "n=2"),
        (b'{"kind": "frame", "n": -1, "cols": {}}', "n", "row count"),
        (b'{"ts_ms": 1, "endpoint": "a"}', "status", "missing"),
        (b'{"ts_ms": 1, "endpoint": "a", "status": 0, "prompt": "hi"}', "prompt", "unknown"),
    ],
)
def test_message_level_errors_are_data(message: bytes, where: str, reason_part: str) -> None:
    result = decode_message(message)
    assert len(result.events) == 0
    assert len(result.errors) == 1
    assert result.errors[0].where == where
    assert reason_part in result.errors[0].reason


def test_bad_rows_do_not_discard_valid_ones() -> None:
    cols = {
        "event_id": ["a", "b", "c", "d", "e", "f", "g", "h"],
        "ts_ms": [TS0, TS0 + 1.5, "x", TS0, TS0, TS0, None, TS0],
        "endpoint": ["/a", "/a", "/a", "", "/a", "/a", "/a", "/a"],
        "status": [0, 0, 0, 0, 9, "ok", 0, "bogus"],
        "tenant": ["t", "t", "t", "t", "t", 5, "t", "t"],
    }
    result = decode_message(encode_frame("gw", "/a", cols))
    assert result.events.event_id.tolist() == ["a"]
    by_where = {(e.where, e.reason.split(" ")[0]): e for e in result.errors}
    assert by_where[("ts_ms", "must")].rows == (1, 2, 6)  # float, text and null timestamps
    assert by_where[("endpoint", "must")].rows == (3,)
    assert by_where[("status", "out")].rows == (4,)
    assert by_where[("status", "must")].rows == (7,)
    assert by_where[("tenant", "must")].rows == (5,)
    assert result.rejected == 7


def test_integral_floats_are_accepted_fractional_are_not() -> None:
    result = decode_message(
        encode_frame(
            "gw",
            "/a",
            {"ts_ms": [float(TS0), TS0 + 0.25], "endpoint": ["/a", "/a"], "status": [0, 0]},
        )
    )
    assert result.events.ts_ms.tolist() == [TS0]
    assert result.rejected == 1


def test_negative_and_huge_numbers_rejected() -> None:
    cols = {
        "ts_ms": [TS0, TS0, TS0, 2**70],
        "endpoint": ["/a"] * 4,
        "status": [0] * 4,
        "latency_ms": [5, -1, 5, 5],
        "priority": [0, 0, 10, 0],
    }
    import json

    result = decode_message(json.dumps({"kind": "frame", "cols": cols}).encode())
    assert len(result.events) == 1
    assert {e.where for e in result.errors} == {"latency_ms", "priority", "ts_ms"}


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = decode_message(data)
    assert len(result.events) + result.rejected >= 0


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    )
)
def test_arbitrary_json_never_raises(doc: object) -> None:
    from schemas import jsoncodec

    try:
        data = jsoncodec.dumps({"kind": "frame", "cols": doc})
    except TypeError:
        return
    decode_message(data)
