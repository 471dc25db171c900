"""The directive cache's logic: signatures, malformed and expired messages, governor liveness."""

from __future__ import annotations

import dataclasses
import json

import pytest
from gw_helpers import make_directive, signed

from gateway.control import ControlHandler
from gateway.enforce import DirectiveTable, RequestMeta
from gateway.stats import Counters
from schemas import jsoncodec
from schemas.control import Heartbeat
from schemas.directive import Action, Directive
from schemas.signing import hmac_keyring

KEY = b"k3y-at-least-16-bytes"
T0 = 1_700_000_000_000


def handler(
    key: bytes | None = KEY, silence_ms: int = 10_000, allow_unsigned: bool = False
) -> ControlHandler:
    ring = hmac_keyring(key, "k1") if key is not None else None
    return ControlHandler(
        DirectiveTable("gw"), Counters(), keyring=ring, allow_unsigned=allow_unsigned,
        silence_ms=silence_ms, started_ms=T0,
    )


def sign(d: Directive, key: bytes = KEY) -> bytes:
    return signed(d, key)


def tamper(wire: bytes, change: object) -> bytes:
    """The envelope with its payload changed after signing."""
    env = jsoncodec.loads(wire)
    doc = jsoncodec.loads(env["payload"])
    change(doc)  # type: ignore[operator]
    return jsoncodec.dumps({**env, "payload": jsoncodec.dumps(doc).decode()})


def shed(**kw: object) -> Action:
    return Action("shed", fraction=1.0, retry_after_ms=1_000)


def test_valid_signature_is_applied() -> None:
    h = handler()
    d = make_directive(shed(), issued_ms=T0)
    assert h.handle(sign(d), T0) == "applied"
    assert d.id in h.table
    assert h._c.directives_applied == 1


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.encode(), "unsigned"),
        (lambda d: sign(d, b"another key, 16+ bytes"), "forged"),
        (lambda d: signed(d, KEY, kid="k2"), "unknown_key"),
        (lambda d: tamper(sign(d), lambda j: j.update(expires_ms=j["expires_ms"] + 1)), "forged"),
        (lambda d: tamper(sign(d), lambda j: j.update(scope={"endpoint": "GET /other"})),
         "forged"),
        (lambda d: tamper(sign(d), lambda j: j["action"].update(fraction=1)), "forged"),
        (lambda d: sign(dataclasses.replace(d, issued_ms=T0 + 60_000,
                                            expires_ms=T0 + 63_000)), "future"),
    ],
    ids=["unsigned", "wrong-key", "unknown-kid", "tampered-expiry", "tampered-scope",
         "same-value-other-bytes", "issued-in-the-future"],
)
def test_bad_signatures_are_rejected_and_counted(mutate: object, reason: str) -> None:
    h = handler()
    wire = mutate(make_directive(shed(), issued_ms=T0))  # type: ignore[operator]
    assert h.handle(wire, T0) == reason
    assert h.table.empty
    assert h._c.directives_rejected[reason] == 1
    assert h.last_heard_ms is None  # a forged message is not a sign of the governor's life


def test_signed_release_is_needed_too() -> None:
    h = handler()
    h.handle(sign(make_directive(shed(), id="x", issued_ms=T0)), T0)
    release = make_directive(Action("release"), id="x", issued_ms=T0 + 1)
    assert h.handle(release.encode(), T0 + 1) == "unsigned"
    assert "x" in h.table
    assert h.handle(sign(release), T0 + 1) == "released"
    assert h.table.empty and h._c.directives_released == 1


def test_without_keys_directives_are_refused_unless_unsigned_is_allowed() -> None:
    """Signed by default: a gateway with no keyring applies nothing (it stays ungoverned, fails
    open) unless unsigned directives are explicitly allowed."""
    d = make_directive(shed(), issued_ms=T0)
    closed = handler(key=None)
    assert closed.handle(d.encode(), T0) == "unsigned"
    assert closed.handle(sign(d), T0) == "unknown_key"
    assert closed.table.empty
    assert handler(key=None, allow_unsigned=True).handle(d.encode(), T0) == "applied"


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[1,2]", b'{"v":2,"kind":"directive"}', b'{"v":1,"kind":"directive"}',
     b'{"v":1,"kind":"gossip"}', b""],
)
def test_malformed_messages_are_counted(data: bytes | None) -> None:
    h = handler()
    assert h.handle(data, T0) == "malformed"
    assert h._c.directives_rejected["malformed"] == 1
    assert h.table.empty


def test_a_tombstone_is_an_ended_episode_not_an_error() -> None:
    """Releases are followed by a tombstone (compaction forgets the episode): nothing to apply,
    nothing rejected, and the episode in force is not touched by another key's tombstone."""
    h = handler()
    h.handle(sign(make_directive(shed(), id="x", issued_ms=T0)), T0)
    assert h.handle(None, T0 + 1) == "tombstone"
    assert "x" in h.table and sum(h._c.directives_rejected.values()) == 0


def test_expired_on_arrival_is_ignored_and_counted() -> None:
    h = handler()
    d = make_directive(shed(), issued_ms=T0 - 120_000, ttl_ms=60_000)
    assert h.handle(sign(d), T0) == "expired"
    assert h._c.directives_rejected["expired"] == 1
    assert h.table.empty


def test_governor_liveness() -> None:
    h = handler(silence_ms=1_000)
    assert h.governor_state(T0 + 500) == "connecting"
    assert h.governor_state(T0 + 1_001) == "unreachable"
    assert h.handle(Heartbeat(T0 + 1_100, "w1").encode(), T0 + 1_100) == "heartbeat"
    assert h.governor_state(T0 + 2_000) == "ok"
    assert h.governor_state(T0 + 2_101) == "unreachable"
    # An old heartbeat replayed from the log is not a sign of life.
    h.handle(Heartbeat(T0, "w1").encode(), T0 + 5_000)
    assert h.governor_state(T0 + 5_000) == "unreachable"
    # A fresh directive is one.
    h.handle(sign(make_directive(shed(), issued_ms=T0 + 5_000)), T0 + 5_000)
    assert h.governor_state(T0 + 5_500) == "ok"


def test_applied_directive_is_enforced() -> None:
    import random

    h = handler()
    h.handle(sign(make_directive(shed(), issued_ms=T0)), T0)
    d = h.table.admit(RequestMeta("POST /v1/chat"), T0 + 1, random.Random(0))
    assert d.kind == "reject"


def deep(levels: int) -> object:
    doc: object = 1
    for _ in range(levels):
        doc = {"a": doc}
    return doc


def directive_doc(evidence: object) -> bytes:
    d = make_directive(Action("shed", fraction=1.0, retry_after_ms=1_000), issued_ms=T0)
    doc = d.to_json()
    doc["reason"]["evidence"] = evidence
    return json.dumps(doc).encode()  # stdlib: orjson refuses to write 260 levels


@pytest.mark.parametrize(
    "evidence",
    [
        {"deep": deep(260)},  # made canonical_bytes raise inside the listener (hardening #3)
        {"list": [1, 2, 3]},
        {"null": None},
        {"long": "x" * 257},
        {f"k{i}": i for i in range(65)},
    ],
    ids=["nested-260", "list", "null", "long-string", "too-many-fields"],
)
def test_evidence_that_is_not_flat_is_malformed_and_the_next_message_applies(
    evidence: object,
) -> None:
    h = handler(key=None, allow_unsigned=True)
    assert h.handle(directive_doc(evidence), T0) == "malformed"
    assert h._c.directives_rejected["malformed"] == 1
    assert h.handle(directive_doc({"why": "test"}), T0) == "applied"


def test_a_message_whose_handling_raises_is_counted_and_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = handler(key=None, allow_unsigned=True)

    def broken(self: DirectiveTable, d: object, now_ms: int) -> str:
        raise RuntimeError("a bug in applying")

    with monkeypatch.context() as m:
        m.setattr(DirectiveTable, "apply", broken)
        assert h.handle(directive_doc({"why": "test"}), T0) == "error"
    assert h._c.directives_rejected["error"] == 1
    assert h.handle(directive_doc({"why": "test"}), T0) == "applied"
