"""Helpers for the gateway SDK tests: directive builders, a fake gateway, topics on Tansu."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from flyball.settings import Settings, load_settings
from gateway.enforce import ADMIT, Decision, DirectiveTable, RandomSource, RequestMeta
from gateway.events import RequestEvent
from schemas.directive import Action, Directive, Reason, Scope, seal
from schemas.signing import hmac_keyring

SIGNING_KEY = "test-signing-key"


def signed(d: Directive, key: bytes = SIGNING_KEY.encode(), kid: str = "k1") -> bytes:
    """``d`` as the control-topic message a worker with HMAC ``key`` publishes."""
    return seal(d, hmac_keyring(key, kid))[1]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def make_directive(
    action: Action,
    scope: Scope | None = None,
    *,
    id: str | None = None,
    issued_ms: int | None = None,
    ttl_ms: int = 60_000,
) -> Directive:
    issued = now_ms() if issued_ms is None else issued_ms
    return Directive(
        id=id or uuid.uuid4().hex[:16],
        issued_ms=issued,
        expires_ms=issued + ttl_ms,
        scope=scope or Scope(endpoint="POST /v1/chat"),
        action=action,
        reason=Reason("test", 1.0, {"why": "test"}),
    )


class FakeGateway:
    """A GatewayLike over a real DirectiveTable that records emitted events (no Kafka)."""

    def __init__(self, gateway_id: str = "gw-test", rng: RandomSource | None = None) -> None:
        import random

        self.gateway_id = gateway_id
        self.table = DirectiveTable(gateway_id)
        self.rng: RandomSource = rng or random.Random(1)
        self.events: list[RequestEvent] = []

    def admit(
        self,
        endpoint: str,
        tenant: str = "",
        agent_id: str = "",
        priority: int = 0,
        attempt: int = 0,
        depth: int = 0,
    ) -> Decision:
        if self.table.empty:
            return ADMIT
        req = RequestMeta(endpoint, tenant, agent_id, priority, attempt, depth)
        return self.table.admit(req, now_ms(), self.rng)

    def wait_slot(self, d: Decision, priority: int = 0) -> Decision:
        """No waiting here (the real ``Gateway`` parks the request): a full limit rejects."""
        if d.kind != "queue":
            return d
        return Decision("reject", retry_after_ms=d.retry_after_ms, directive_id=d.directive_id,
                        applied=d.applied)

    async def wait_slot_async(self, d: Decision, priority: int = 0) -> Decision:
        return self.wait_slot(d, priority)

    def done(self, d: Decision) -> None:
        self.table.release(d.slot, 0)

    def emit(self, event: RequestEvent) -> None:
        self.events.append(event)


@dataclass
class Topics:
    bootstrap: str
    events: str
    control: str

    def settings(self, signing_key: str | None = None) -> Settings:
        return load_settings(
            kafka_bootstrap=self.bootstrap,
            topic_events=self.events,
            topic_control=self.control,
            signing_key=signing_key,
        )

    def publish(self, *values: bytes, key: bytes = b"k") -> None:
        p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 0})
        for v in values:
            p.produce(self.control, value=v, key=key)
        assert p.flush(5) == 0


def create_topics(bootstrap: str, *names: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(n, num_partitions=partitions) for n in names])
    for f in futures.values():
        f.result(timeout=10)


def wait_until(pred: Callable[[], bool], timeout_s: float = 5.0, step_s: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step_s)
    return pred()
