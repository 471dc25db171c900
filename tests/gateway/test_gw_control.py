"""The directive cache's logic: signatures, malformed and expired messages, governor liveness."""

from __future__ import annotations

import dataclasses
import json

import pytest
from gw_helpers import make_directive

from gateway.control import ControlHandler
from gateway.enforce import DirectiveTable, RequestMeta
from gateway.stats import Counters
from schemas.control import Heartbeat
from schemas.directive import Action, Scope, sign

KEY = b"k3y"
T0 = 1_700_000_000_000


def handler(key: bytes | None = KEY, silence_ms: int = 10_000) -> ControlHandler:
    return ControlHandler(
        DirectiveTable("gw"), Counters(), signing_key=key, silence_ms=silence_ms, started_ms=T0
    )


def shed(**kw: object) -> Action:
    return Action("shed", fraction=1.0, retry_after_ms=1_000)


def test_valid_signature_is_applied() -> None:
    h = handler()
    d = sign(make_directive(shed(), issued_ms=T0), KEY)
    assert h.handle(d.encode(), T0) == "applied"
    assert d.id in h.table
    assert h._c.directives_applied == 1


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: dataclasses.replace(d, sig=None), "unsigned"),
        (lambda d: sign(d, b"wrong key"), "forged"),
        (lambda d: dataclasses.replace(d, expires_ms=d.expires_ms + 1), "forged"),
        (lambda d: dataclasses.replace(d, scope=Scope(endpoint="GET /other")), "forged"),
        (
            lambda d: dataclasses.replace(d, action=dataclasses.replace(d.action, fraction=0.5)),
            "forged",
        ),
    ],
    ids=["unsigned", "wrong-key", "tampered-expiry", "tampered-scope", "tampered-action"],
)
def test_bad_signatures_are_rejected_and_counted(mutate: object, reason: str) -> None:
    h = handler()
    d = mutate(sign(make_directive(shed(), issued_ms=T0), KEY))  # type: ignore[operator]
    assert h.handle(d.encode(), T0) == reason
    assert h.table.empty
    assert h._c.directives_rejected[reason] == 1
    assert h.last_heard_ms is None  # a forged message is not a sign of the governor's life


def test_signed_release_is_needed_too() -> None:
    h = handler()
    d = sign(make_directive(shed(), id="x", issued_ms=T0), KEY)
    h.handle(d.encode(), T0)
    release = make_directive(Action("release"), id="x", issued_ms=T0 + 1)
    assert h.handle(release.encode(), T0 + 1) == "unsigned"
    assert "x" in h.table
    assert h.handle(sign(release, KEY).encode(), T0 + 1) == "released"
    assert h.table.empty and h._c.directives_released == 1


def test_without_a_key_unsigned_directives_apply() -> None:
    h = handler(key=None)
    assert h.handle(make_directive(shed(), issued_ms=T0).encode(), T0) == "applied"


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[1,2]", b'{"v":2,"kind":"directive"}', b'{"v":1,"kind":"directive"}',
     b'{"v":1,"kind":"gossip"}', None],
)
def test_malformed_messages_are_counted(data: bytes | None) -> None:
    h = handler()
    assert h.handle(data, T0) == "malformed"
    assert h._c.directives_rejected["malformed"] == 1
    assert h.table.empty


def test_expired_on_arrival_is_ignored_and_counted() -> None:
    h = handler()
    d = sign(make_directive(shed(), issued_ms=T0 - 120_000, ttl_ms=60_000), KEY)
    assert h.handle(d.encode(), T0) == "expired"
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
    h.handle(sign(make_directive(shed(), issued_ms=T0 + 5_000), KEY).encode(), T0 + 5_000)
    assert h.governor_state(T0 + 5_500) == "ok"


def test_applied_directive_is_enforced() -> None:
    import random

    h = handler()
    h.handle(sign(make_directive(shed(), issued_ms=T0), KEY).encode(), T0)
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
    h = handler(key=None)
    assert h.handle(directive_doc(evidence), T0) == "malformed"
    assert h._c.directives_rejected["malformed"] == 1
    assert h.handle(directive_doc({"why": "test"}), T0) == "applied"


def test_a_message_whose_handling_raises_is_counted_and_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = handler(key=None)

    def broken(self: DirectiveTable, d: object, now_ms: int) -> str:
        raise RuntimeError("a bug in applying")

    with monkeypatch.context() as m:
        m.setattr(DirectiveTable, "apply", broken)
        assert h.handle(directive_doc({"why": "test"}), T0) == "error"
    assert h._c.directives_rejected["error"] == 1
    assert h.handle(directive_doc({"why": "test"}), T0) == "applied"
