"""Hardening #5: priority and attempt headers are believed only from trusted networks."""

from __future__ import annotations

import pytest

from gateway.asgi import default_classify
from gateway.headers import RequestInfo
from gateway.trust import HeaderTrust, RetryMemory, believed, parse_networks

T0 = 1_763_900_000_000


def scope(host: str, headers: dict[str, str]) -> dict[str, object]:
    return {
        "type": "http", "method": "POST", "path": "/v1/chat", "client": (host, 5555),
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }


def test_a_retry_claiming_to_be_a_first_important_attempt_is_not_believed_from_outside() -> None:
    clock = iter(range(T0, T0 + 10_000, 100))
    classify = default_classify(trust=HeaderTrust(parse_networks("10.0.0.0/8")),
                                clock_ms=lambda: next(clock))
    claim = {"x-flyball-priority": "0", "x-flyball-attempt": "0", "x-request-id": "r-1"}
    outside = [classify(scope("203.0.113.7", claim)) for _ in range(3)]
    assert [i.priority for i in outside] == [5, 5, 5]  # at best the untrusted floor
    assert [i.attempt for i in outside] == [0, 1, 2]  # the repeated id is a retry
    inside = classify(scope("10.1.2.3", claim))
    assert (inside.priority, inside.attempt) == (0, 0)  # a trusted platform's word stands
    # a client may make itself less important or claim a retry: both only cost itself
    humble = classify(scope("203.0.113.7", {"x-flyball-priority": "8",
                                            "x-flyball-attempt": "4"}))
    assert (humble.priority, humble.attempt) == (8, 4)


@pytest.mark.parametrize("host", [None, "", "testclient", "::1", "127.0.0.1"])
def test_default_trust_is_loopback_only(host: str | None) -> None:
    assert HeaderTrust().trusts(host) == (host in ("::1", "127.0.0.1"))


def test_retry_memory_is_bounded_and_forgets() -> None:
    m = RetryMemory(window_ms=1_000, max_ids=3)
    assert [m.sightings("a", T0 + i) for i in range(3)] == [0, 1, 2]
    assert m.sightings("a", T0 + 5_000) == 0  # outside the window: a new request
    for i in range(10):
        m.sightings(f"id{i}", T0 + 5_000 + i)
    assert len(m) <= 3
    assert m.sightings("", T0) == 0 and len(m) <= 3  # no id: nothing to remember


def test_believed_leaves_trusted_info_alone() -> None:
    info = RequestInfo("e", priority=0, attempt=0, request_id="r")
    assert believed(info, True, HeaderTrust(), RetryMemory(), T0) is info
    with pytest.raises(ValueError, match="not-a-network"):
        parse_networks("10.0.0.0/8, not-a-network")
