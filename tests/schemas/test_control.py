"""Directive codec, signatures, and heartbeats."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import jsoncodec
from schemas.bounds import DIRECTIVE_RANGES, TS_MS, TTL_MS
from schemas.control import Heartbeat, decode_control, decode_directive
from schemas.directive import Action, Directive, Reason, Scope, directive_id
from schemas.errors import DecodeError

ids = st.text(min_size=1, max_size=10)
opt_text = st.none() | st.text(min_size=1, max_size=10)
opt_int = st.none() | st.integers(0, 9)
scopes = st.builds(
    Scope,
    endpoint=opt_text,
    tenant=opt_text,
    agent_id=opt_text,
    min_priority=opt_int,
    min_attempt=opt_int,
    min_depth=opt_int,
)
pos = st.floats(0, 1e6, allow_nan=False)
actions = st.one_of(
    st.builds(
        Action,
        type=st.just("throttle"),
        rate_per_s=pos,
        burst=pos,
        shares=st.dictionaries(ids, st.floats(0, 1), max_size=3).map(
            lambda d: tuple(sorted(d.items()))
        ),
        default_share=st.floats(0, 1),
    ),
    st.builds(
        Action,
        type=st.just("defer"),
        hold_ms=st.integers(0, 10**5),
        jitter_ms=st.integers(0, 10**5),
    ),
    st.builds(
        Action, type=st.just("shed"), retry_after_ms=st.integers(0, 10**5), fraction=st.floats(0, 1)
    ),
    st.builds(Action, type=st.just("reroute"), target=ids),
    st.builds(Action, type=st.just("release")),
)
directives = st.builds(
    lambda i, t, ttl, s, a, sc: Directive(
        i, t, t + ttl, s, a, Reason("retry_storm", sc, {"amplification": 3.5})
    ),
    ids,
    st.integers(TS_MS[0], TS_MS[1] - TTL_MS[1]),
    st.integers(*TTL_MS),
    scopes,
    actions,
    st.floats(0, 1),
)


@settings(max_examples=80, deadline=None)
@given(directives)
def test_directive_round_trip(d: Directive) -> None:
    assert decode_control(d.encode()) == d


def test_directive_id_is_deterministic_and_scoped() -> None:
    s1, s2 = Scope(endpoint="/a"), Scope(endpoint="/a", tenant="t")
    assert directive_id("storm", s1, 100) == directive_id("storm", s1, 100)
    assert (
        len(
            {
                directive_id("storm", s1, 100),
                directive_id("storm", s2, 100),
                directive_id("storm", s1, 200),
                directive_id("fanout", s1, 100),
            }
        )
        == 4
    )


def test_heartbeat_round_trip() -> None:
    hb = Heartbeat(ts_ms=123, worker="w1")
    assert decode_control(hb.encode()) == hb
    assert isinstance(decode_directive(hb.encode()), DecodeError)


GOOD = {
    "v": 1,
    "kind": "directive",
    "id": "d1",
    "issued_ms": 10,
    "expires_ms": 20,
    "scope": {"endpoint": "/a"},
    "action": {"type": "defer", "hold_ms": 100},
    "reason": {"detector": "retry_storm", "score": 0.9},
}


@pytest.mark.parametrize(
    ("patch", "where"),
    [
        ({"v": 3}, "v"),
        ({"kind": "memo"}, "kind"),
        ({"id": ""}, "id"),
        ({"issued_ms": -5}, "issued_ms"),
        ({"expires_ms": 5}, "expires_ms"),
        ({"scope": "everything"}, "scope"),
        ({"scope": {"endpoint": 7}}, "scope.endpoint"),
        ({"scope": {"planet": "mars"}}, "scope"),
        ({"action": {"type": "nuke"}}, "action.type"),
        ({"action": {"type": "defer", "hold_ms": 1.5}}, "action.hold_ms"),
        ({"action": {"type": "shed", "fraction": 2.0}}, "action.fraction"),
        ({"action": {"type": "reroute"}}, "action.target"),
        ({"action": {"type": "throttle", "shares": {"g": -1}}}, "action.shares"),
        ({"reason": {"score": 1.0}}, "reason.detector"),
    ],
)
def test_bad_directives_are_typed_errors(patch: dict[str, object], where: str) -> None:
    result = decode_control(jsoncodec.dumps({**GOOD, **patch}))
    assert isinstance(result, DecodeError), result
    assert result.where == where


def test_good_directive_template_decodes() -> None:
    assert isinstance(decode_control(jsoncodec.dumps(GOOD)), Directive)


@pytest.mark.parametrize("data", [b"", b"null", b"{", b'"x"', b"[]"])
def test_garbage_is_an_error_not_an_exception(data: bytes) -> None:
    assert isinstance(decode_control(data), DecodeError)


def _field(doc: dict, dotted: str) -> tuple[dict, str]:
    *path, leaf = dotted.split(".")
    for part in path:
        doc = doc[part]
    return doc, leaf


@pytest.mark.parametrize("dotted", sorted(DIRECTIVE_RANGES))
def test_a_number_outside_its_range_is_malformed_not_stored(dotted: str) -> None:
    """Each bounded field, one past its range (hold_ms = 2**33, min_priority = 300, issued_ms =
    2**50 were seen to stall history): a DecodeError naming the field, never a Directive."""
    d = Directive("x", 1_700_000_000_000, 1_700_000_003_000, Scope(endpoint="e"),
                  Action("defer", hold_ms=10), Reason("d", 0.5, {}))
    doc = jsoncodec.loads(d.encode())
    where, leaf = _field(doc, dotted)
    where[leaf] = DIRECTIVE_RANGES[dotted][1] + 1
    if dotted in ("issued_ms", "expires_ms"):
        doc["issued_ms"] = doc["expires_ms"] = where[leaf]
    out = decode_control(jsoncodec.dumps(doc))
    assert isinstance(out, DecodeError)
    assert out.where in (dotted, "issued_ms")  # both times move together here
    where[leaf] = DIRECTIVE_RANGES[dotted][1]
    if dotted in ("issued_ms", "expires_ms"):
        doc["issued_ms"] = doc["expires_ms"] = where[leaf]
    assert isinstance(decode_control(jsoncodec.dumps(doc)), Directive)


@pytest.mark.parametrize("field,value", [("expires_ms", 1_700_000_000_000 + 2**40),
                                         ("rate", 1e300)])
def test_an_unbounded_lifetime_or_rate_is_malformed(field: str, value: float) -> None:
    """A wildcard shed expiring in 2**62 ms was accepted; a lifetime beyond TTL_MS is not."""
    d = Directive("x", 1_700_000_000_000, 1_700_000_003_000, Scope(),
                  Action("throttle", rate_per_s=5.0, burst=5.0), Reason("d", 0.5, {}))
    doc = jsoncodec.loads(d.encode())
    if field == "rate":
        doc["action"]["rate_per_s"] = value
    else:
        doc[field] = int(value)
    out = decode_control(jsoncodec.dumps(doc))
    assert isinstance(out, DecodeError)
