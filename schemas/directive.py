"""Directives: what the governor tells gateways to do, and how it is signed.

A directive is scoped (endpoint / tenant / agent / priority / attempt / depth), carries one
action, expires (``expires_ms``: a silent governor stops constraining anyone) and carries the
evidence that caused it.
The wire format is a JSON object (see ``schemas/json/directive.schema.json`` and
``schemas/README.md``). Signed, it travels inside an envelope whose signature covers its exact
JSON bytes (``schemas.signing``); ``sig`` then names the key that signed it (``kid``), for
history. It is never part of the JSON.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, Literal

from schemas import jsoncodec

if TYPE_CHECKING:
    from schemas.signing import Keyring

DIRECTIVE_VERSION: Final = 1

ActionType = Literal["throttle", "defer", "shed", "reroute", "release", "limit"]
ACTION_TYPES: Final[tuple[str, ...]] = (
    "throttle", "defer", "shed", "reroute", "release", "limit"
)


@dataclass(frozen=True, slots=True)
class Scope:
    """Which requests a directive applies to. ``None`` means "any".

    - ``min_priority``: applies only to requests whose priority number is >= this (0 is the most
      important; a ceiling of 5 constrains priorities 5..9 and leaves 0..4 alone).
    - ``min_attempt``: applies only to attempts numbered >= this (1 = retries only).
    - ``min_depth``: applies only to requests at tree depth >= this (1 = sub-requests only).
    """

    endpoint: str | None = None
    tenant: str | None = None
    agent_id: str | None = None
    min_priority: int | None = None
    min_attempt: int | None = None
    min_depth: int | None = None

    def key(self) -> str:
        """Stable text key (the control topic's message key and the cache key)."""
        parts = []
        for name in ("endpoint", "tenant", "agent_id", "min_priority", "min_attempt", "min_depth"):
            v = getattr(self, name)
            if v is not None:
                parts.append(f"{name}={v}")
        return "|".join(parts) or "*"

    def specificity(self) -> int:
        """Rank for "most specific first": agent > tenant > endpoint > filters."""
        return (
            (8 if self.agent_id is not None else 0)
            + (4 if self.tenant is not None else 0)
            + (2 if self.endpoint is not None else 0)
            + (
                1
                if (self.min_priority, self.min_attempt, self.min_depth) != (None, None, None)
                else 0
            )
        )

    def to_json(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in ("endpoint", "tenant", "agent_id", "min_priority", "min_attempt", "min_depth")
            if getattr(self, k) is not None
        }


@dataclass(frozen=True, slots=True)
class Action:
    """One action. Only the fields of its ``type`` are meaningful:

    - ``throttle``: ``rate_per_s`` for the scope as a whole (all gateways together), ``burst``, and
      ``shares``: gateway id -> fraction of the rate that gateway may admit (apportioned by its
      observed share of the scope's traffic); a gateway not listed uses ``default_share``.
      ``max_delay_ms`` > 0 paces instead of rejecting: a request over the rate is held until its
      token is due when that is at most ``max_delay_ms`` away (a bounded queue at the gateway,
      as NGINX ``limit_req`` with ``delay``), and rejected beyond.
    - ``defer``: hold each request ``hold_ms`` plus uniform random ``[0, jitter_ms]``.
    - ``shed``: reject ``fraction`` of matching requests with ``retry_after_ms``.
    - ``reroute``: send matching requests to ``target``.
    - ``release``: the episode is over; remove directives with the same ``id``.
    - ``limit``: at most ``max_inflight`` requests of the scope in flight at once (all gateways
      together; a gateway's part is ``max_inflight × share``, at least 1, with ``shares`` and
      ``default_share`` as for a throttle). A request that finds no free slot waits at the
      gateway, most important priority first, then first come (newest first once the oldest
      waited half of ``max_delay_ms``: adaptive LIFO); a slot is handed on as a request in
      flight completes. One that waited ``max_delay_ms`` is rejected with ``retry_after_ms``.
      A concurrency cap clocks itself: it follows a slower service at once, where a rate must be
      re-measured (Little's law: in flight = throughput × time in service).
    """

    type: ActionType
    rate_per_s: float = 0.0
    burst: float = 0.0
    shares: tuple[tuple[str, float], ...] = ()
    default_share: float = 1.0
    max_delay_ms: int = 0
    hold_ms: int = 0
    jitter_ms: int = 0
    retry_after_ms: int = 0
    fraction: float = 1.0
    target: str = ""
    max_inflight: int = 0

    def share_for(self, gateway_id: str) -> float:
        for gid, share in self.shares:
            if gid == gateway_id:
                return share
        return self.default_share

    def to_json(self) -> dict[str, Any]:
        t = self.type
        if t == "throttle":
            out: dict[str, Any] = {
                "type": t,
                "rate_per_s": self.rate_per_s,
                "burst": self.burst,
                "shares": dict(self.shares),
                "default_share": self.default_share,
            }
            if self.max_delay_ms:
                out["max_delay_ms"] = self.max_delay_ms
            return out
        if t == "defer":
            return {"type": t, "hold_ms": self.hold_ms, "jitter_ms": self.jitter_ms}
        if t == "shed":
            return {"type": t, "retry_after_ms": self.retry_after_ms, "fraction": self.fraction}
        if t == "reroute":
            return {"type": t, "target": self.target}
        if t == "limit":
            return {
                "type": t,
                "max_inflight": self.max_inflight,
                "shares": dict(self.shares),
                "default_share": self.default_share,
                "max_delay_ms": self.max_delay_ms,
                "retry_after_ms": self.retry_after_ms,
            }
        return {"type": t}


@dataclass(frozen=True, slots=True)
class Reason:
    """Why: the detector, its score in [0, 1], and the evidence (feature values) behind it."""

    detector: str
    score: float
    evidence: dict[str, float | int | str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"detector": self.detector, "score": self.score, "evidence": dict(self.evidence)}


@dataclass(frozen=True, slots=True)
class Directive:
    """A directive as carried on the control topic.

    ``id`` names the episode (deterministic: detector, scope and onset), so a refresh of the same
    episode (a later ``issued_ms`` / ``expires_ms``) replaces the earlier message, and a worker that
    re-derives the episode after a restart produces the same ``id``.
    """

    id: str
    issued_ms: int
    expires_ms: int
    scope: Scope
    action: Action
    reason: Reason
    sig: str | None = None  # the kid that signed it (history only; not in the JSON)
    v: int = DIRECTIVE_VERSION

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": self.v,
            "kind": "directive",
            "id": self.id,
            "issued_ms": self.issued_ms,
            "expires_ms": self.expires_ms,
            "scope": self.scope.to_json(),
            "action": self.action.to_json(),
            "reason": self.reason.to_json(),
        }
        return out

    def encode(self) -> bytes:
        return jsoncodec.dumps(self.to_json())

    def active_at(self, now_ms: int) -> bool:
        return self.action.type != "release" and now_ms < self.expires_ms


def directive_id(detector: str, scope: Scope, onset_ms: int) -> str:
    """Deterministic episode id: same detector, scope and onset -> same id, on any worker."""
    h = hashlib.blake2b(f"{detector}\x00{scope.key()}\x00{onset_ms}".encode(), digest_size=12)
    return h.hexdigest()


def seal(d: Directive, ring: Keyring) -> tuple[Directive, bytes]:
    """``d`` marked as signed by ``ring``'s signing key, and its envelope (the wire bytes)."""
    assert ring.signer is not None
    return replace(d, sig=ring.signer.kid), ring.seal(d.encode())
