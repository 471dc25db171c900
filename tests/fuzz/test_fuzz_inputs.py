"""Fuzz suite (hardening): every decoder, the gateway's control handler and the history sink's
message handlers take arbitrary bytes, large (up to 1 MB) and deep (nesting 1,000 to 5,000)
inputs, and mutations of valid messages, and never raise; valid events are never lost.

What happens to each kind of bad input:

- not JSON, not an object, truncated, bit-flipped: a ``DecodeError`` (events: the message is
  dead-lettered; control: counted as ``malformed``); nothing raises;
- JSON nested deeper than the parser's limit (orjson: 254 levels): "not JSON", the same;
- a frame whose rows are partly bad: the bad rows are counted (``rejected``), every valid row is
  kept (checked below for any mix);
- a signed envelope with any field mutated: ``forged``, ``unknown_key`` or ``malformed``, never
  applied;
- a 1 MB string or array anywhere: refused by the field rules or carried within bounds.

Every case goes through the event decoder, the control decoder and signature check, the gateway's
control handler, the feature and score decoders and the history sink's four message handlers.
Cases per run: the sum of ``max_examples`` below, 1,252, plus 5 fixed ones; derandomized, so CI
runs the same cases every time.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flyball.settings import load_settings
from gateway.control import ControlHandler
from gateway.enforce import DirectiveTable
from gateway.stats import Counters
from infra.records_codec import decode_feature, decode_score
from infra.sink import HistorySink
from schemas import jsoncodec
from schemas.control import Heartbeat, Refused, decode_control, open_control
from schemas.directive import Action, Directive, Reason, Scope, seal
from schemas.errors import DecodeError
from schemas.frames import decode_message, encode_frame
from schemas.records import FeatureRecord, ScoreRecord
from schemas.signing import Keyring, Sealed, generate_key

FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
T0 = 1_763_900_000_000
RING = Keyring((generate_key("k1", "hmac-sha256"),), "k1")

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(
    max_size=40
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=6),
    max_leaves=40,
)


def deep(levels: int, leaf: str = "1", kind: str = "list") -> bytes:
    if kind == "list":
        return ("[" * levels + leaf + "]" * levels).encode()
    return ('{"a":' * levels + leaf + "}" * levels).encode()


def mutate(data: bytes, rnd: random.Random, n: int) -> bytes:
    b = bytearray(data)
    for _ in range(n):
        op = rnd.randrange(4)
        i = rnd.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(i, len(b) - 1)] ^= 1 << rnd.randrange(8)
        elif op == 1:
            b[i:i] = bytes([rnd.randrange(256)])
        elif op == 2 and b:
            del b[min(i, len(b) - 1)]
        else:
            b = b[:i]
    return bytes(b)


VALID_EVENT = {
    "event_id": "e1", "ts_ms": T0, "latency_ms": 12, "tenant": "acme", "agent_id": "a",
    "endpoint": "POST /v1/chat", "status": "ok", "attempt": 0, "priority": 3,
}
DIRECTIVE = Directive(
    "d1", T0, T0 + 3_000, Scope(endpoint="POST /v1/chat", min_attempt=1),
    Action("shed", fraction=1.0, retry_after_ms=500), Reason("retry_storm", 0.9, {"x": 1.0}),
)
VALID_MESSAGES = [
    jsoncodec.dumps({"v": 1, "kind": "event", **VALID_EVENT}),
    encode_frame("gw", "POST /v1/chat", {k: [v, v] for k, v in VALID_EVENT.items()}),
    DIRECTIVE.encode(),
    seal(DIRECTIVE, RING)[1],
    Heartbeat(T0, "w1").encode(),
]


def handler() -> ControlHandler:
    return ControlHandler(DirectiveTable("gw"), Counters(), keyring=RING, silence_ms=10_000,
                          started_ms=T0)


def history_sink() -> HistorySink:
    """The history sink's message handlers (not started: no connection is made)."""
    s = load_settings(kafka_bootstrap="127.0.0.1:9", signing_key="fuzz-signing-key-16b")
    return HistorySink(s, "127.0.0.1:9", store=None)  # type: ignore[arg-type]


SINK = history_sink()


def every_reader(data: bytes) -> None:
    """Feed ``data`` to every reader; each returns a value of its declared kinds."""
    for on_message in (SINK._on_event, SINK._on_control, SINK._on_feature, SINK._on_score):
        errors = on_message(data)
        assert all(isinstance(e, DecodeError) for e in errors)
    SINK._batch = type(SINK._batch)()  # drop what was buffered
    r = decode_message(data)
    assert len(r.events) >= 0 and all(isinstance(e, DecodeError) for e in r.errors)
    assert isinstance(decode_control(data), Directive | Heartbeat | Sealed | DecodeError)
    got = open_control(data, RING, allow_unsigned=False)
    assert isinstance(got, Directive | Heartbeat | Refused)
    assert isinstance(handler().handle(data, T0), str)
    assert isinstance(decode_feature(data), FeatureRecord | DecodeError)
    assert isinstance(decode_score(data), ScoreRecord | DecodeError)


@FUZZ
@given(st.binary(max_size=2_000))
def test_arbitrary_bytes(data: bytes) -> None:
    every_reader(data)


@FUZZ
@given(json_values)
def test_arbitrary_json(doc: Any) -> None:
    # the stdlib writes what orjson will not: integers beyond 64 bits, NaN and Infinity
    every_reader(json.dumps(doc).encode())


@FUZZ
@given(st.sampled_from(VALID_MESSAGES), st.integers(0, 2**32), st.integers(1, 8))
def test_mutations_of_valid_messages(data: bytes, seed: int, n: int) -> None:
    mutated = mutate(data, random.Random(seed), n)
    every_reader(mutated)
    got = open_control(mutated, RING, allow_unsigned=False)
    if isinstance(got, Directive):  # a mutation that still verifies is the original directive
        assert got.id == DIRECTIVE.id and got.action == DIRECTIVE.action


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.integers(1_000, 5_000), st.sampled_from(["list", "object"]))
def test_deep_nesting(levels: int, kind: str) -> None:
    every_reader(deep(levels, kind=kind))
    # inside a real field, too: evidence, a frame column, an envelope payload
    ev = DIRECTIVE.to_json()
    ev["reason"]["evidence"] = {"x": "PLACEHOLDER"}
    text = jsoncodec.dumps(ev).replace(b'"PLACEHOLDER"', deep(levels, kind=kind))
    every_reader(text)
    frame = encode_frame("gw", "k", {"ts_ms": ["PLACEHOLDER"]}).replace(
        b'"PLACEHOLDER"', deep(levels, kind=kind)
    )
    every_reader(frame)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    st.sampled_from(["string", "array", "object", "frame-rows"]), st.integers(500_000, 1_000_000)
)
def test_one_megabyte_inputs(shape: str, size: int) -> None:
    if shape == "string":
        doc: Any = {**VALID_EVENT, "endpoint": "x" * size}
    elif shape == "array":
        doc = {"v": 1, "kind": "frame", "gateway_id": "g", "key": "k", "n": 3,
               "cols": {"ts_ms": [T0] * (size // 15)}}
    elif shape == "object":
        evidence = {f"k{i}": i for i in range(size // 12)}
        doc = {**DIRECTIVE.to_json(),
               "reason": {"detector": "d", "score": 1.0, "evidence": evidence}}
    else:
        n = size // 200
        doc = {"v": 1, "kind": "frame", "gateway_id": "g", "key": "k", "n": n,
               "cols": {k: [v] * n for k, v in VALID_EVENT.items()}}
    data = jsoncodec.dumps(doc)
    assert len(data) <= 1_100_000
    every_reader(data)
    if shape == "frame-rows":
        assert len(decode_message(data).events) == n  # a large valid frame is kept whole


BAD_VALUES = {
    "status": ["maybe", 7, None, 1.5, [], {}], "ts_ms": [-1, "now", 2**63, 1.5, None],
    "latency_ms": [-5, "slow", 2**40], "priority": [10, -1, "high"], "attempt": [-1, 2**20],
    "endpoint": ["", 5, None, "x" * 5_000], "tenant": [7, [], {}],
}


@FUZZ
@given(
    st.lists(st.booleans(), min_size=1, max_size=60),
    st.lists(st.sampled_from(sorted(BAD_VALUES)), min_size=60, max_size=60),
    st.integers(0, 2**32),
)
def test_no_valid_event_is_lost_among_bad_rows(valid: list[bool], fields: list[str],
                                               seed: int) -> None:
    rnd = random.Random(seed)
    rows = []
    for i, ok in enumerate(valid):
        row = {**VALID_EVENT, "event_id": f"e{i}", "ts_ms": T0 + i}
        if not ok:
            row[fields[i]] = rnd.choice(BAD_VALUES[fields[i]])
        rows.append(row)
    cols = {k: [r[k] for r in rows] for k in VALID_EVENT}
    result = decode_message(encode_frame("gw", "k", cols))
    kept = set(result.events.event_id.tolist())
    assert {f"e{i}" for i, ok in enumerate(valid) if ok} <= kept
    assert len(result.events) + result.rejected == len(valid)


@pytest.mark.parametrize("data", [None, b"", b"\x00" * 10, b"\xff\xfe", "\ud800".encode(
    "utf-8", "surrogatepass")])
def test_odd_values_on_the_control_topic(data: bytes | None) -> None:
    h = handler()
    assert h.handle(data, T0) in ("tombstone", "malformed")
    assert h.table.empty
