"""Helpers shared by the infra tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Producer


def now_ms() -> int:
    return int(time.time() * 1000)  # rows older than the TTL would be dropped on insert


def produce(bootstrap: str, topic: str, messages: list[tuple[str, bytes]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for key, value in messages:
        p.produce(topic, key=key.encode(), value=value)
    assert p.flush(10) == 0


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
