"""Messages on the control topic: directives and governor heartbeats.

Decoding never raises: a malformed message becomes a :class:`DecodeError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Final

from schemas import jsoncodec
from schemas.bounds import DIRECTIVE_RANGES, MAX_RATE, TS_MS, TTL_MS, out_of_range
from schemas.directive import (
    ACTION_TYPES,
    DIRECTIVE_VERSION,
    Action,
    Directive,
    Reason,
    Scope,
)
from schemas.errors import DecodeError
from schemas.signing import SIGNED_KIND, Keyring, Sealed, sealed_from_json

HEARTBEAT_KIND: Final = "heartbeat"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A worker's periodic "I am alive" on the control topic (gateways' silence detector)."""

    ts_ms: int
    worker: str
    v: int = 1

    def encode(self) -> bytes:
        return jsoncodec.dumps(
            {"v": self.v, "kind": HEARTBEAT_KIND, "ts_ms": self.ts_ms, "worker": self.worker}
        )


class _Bad(Exception):
    def __init__(self, where: str, reason: str) -> None:
        super().__init__(reason)
        self.where = where
        self.reason = reason


MAX_EVIDENCE_FIELDS = 64  # a directive's evidence: the signal's and the law's numbers
MAX_EVIDENCE_STR = 256
_BOUNDS: Final[dict[str, tuple[int, int]]] = {**DIRECTIVE_RANGES, "ts_ms": TS_MS}


def decode_control(
    data: bytes | bytearray | memoryview | str,
) -> Directive | Heartbeat | Sealed | DecodeError:
    """Decode one control-topic message: a signed envelope is returned unverified (``Sealed``;
    its payload is decoded once a keyring accepts it)."""
    doc = jsoncodec.load_object(data)
    if isinstance(doc, DecodeError):
        return doc
    try:
        if doc.get("v") != DIRECTIVE_VERSION:
            raise _Bad("v", f"unsupported version {doc.get('v')!r} (this reader knows v=1)")
        kind = doc.get("kind")
        if kind == HEARTBEAT_KIND:
            return Heartbeat(ts_ms=_int(doc, "ts_ms"), worker=_str(doc, "worker"))
        if kind == SIGNED_KIND:
            return sealed_from_json(doc)
        if kind != "directive":
            raise _Bad(
                "kind", f"unknown kind {kind!r} (expected 'signed', 'directive' or 'heartbeat')"
            )
        return directive_from_json(doc)
    except _Bad as bad:
        return DecodeError(bad.reason, bad.where)


def decode_directive(data: bytes | bytearray | memoryview | str) -> Directive | DecodeError:
    msg = decode_control(data)
    if isinstance(msg, Heartbeat):
        return DecodeError("a heartbeat, not a directive", "kind")
    if isinstance(msg, Sealed):
        return DecodeError("a signed envelope: open it with a keyring", "kind")
    return msg


def directive_from_json(doc: dict[str, Any]) -> Directive:
    """Build a Directive from its JSON object; raises ``_Bad`` (internal) on a bad field."""
    scope_doc = _obj(doc, "scope")
    action_doc = _obj(doc, "action")
    reason_doc = _obj(doc, "reason")
    scope = Scope(
        endpoint=_opt_str(scope_doc, "endpoint", "scope."),
        tenant=_opt_str(scope_doc, "tenant", "scope."),
        agent_id=_opt_str(scope_doc, "agent_id", "scope."),
        min_priority=_opt_int(scope_doc, "min_priority", "scope."),
        min_attempt=_opt_int(scope_doc, "min_attempt", "scope."),
        min_depth=_opt_int(scope_doc, "min_depth", "scope."),
    )
    unknown = set(scope_doc) - set(Scope.__slots__)
    if unknown:
        raise _Bad("scope", f"unknown scope field(s) {sorted(unknown)}")
    atype = action_doc.get("type")
    if atype not in ACTION_TYPES:
        raise _Bad("action.type", f"must be one of {list(ACTION_TYPES)}, got {atype!r}")
    shares_doc = action_doc.get("shares", {})
    if not isinstance(shares_doc, dict) or not all(
        isinstance(k, str) and _is_num(v) and v >= 0 for k, v in shares_doc.items()
    ):
        raise _Bad("action.shares", "must map gateway ids to non-negative numbers")
    action = Action(
        type=atype,
        rate_per_s=_num(action_doc, "rate_per_s", 0.0, "action."),
        burst=_num(action_doc, "burst", 0.0, "action."),
        shares=tuple(sorted((k, float(v)) for k, v in shares_doc.items())),
        default_share=_num(action_doc, "default_share", 1.0, "action."),
        max_delay_ms=_opt_int(action_doc, "max_delay_ms", "action.") or 0,
        hold_ms=_opt_int(action_doc, "hold_ms", "action.") or 0,
        jitter_ms=_opt_int(action_doc, "jitter_ms", "action.") or 0,
        retry_after_ms=_opt_int(action_doc, "retry_after_ms", "action.") or 0,
        fraction=_num(action_doc, "fraction", 1.0, "action."),
        target=_opt_str(action_doc, "target", "action.") or "",
        max_inflight=_opt_int(action_doc, "max_inflight", "action.") or 0,
    )
    if not 0.0 <= action.fraction <= 1.0:
        raise _Bad("action.fraction", "must be within [0, 1]")
    if atype == "limit" and action.max_inflight < 1:
        raise _Bad("action.max_inflight", "limit needs max_inflight >= 1")
    if atype == "reroute" and not action.target:
        raise _Bad("action.target", "reroute needs a target")
    evidence = reason_doc.get("evidence", {})
    if not isinstance(evidence, dict):
        raise _Bad("reason.evidence", "must be an object")
    if len(evidence) > MAX_EVIDENCE_FIELDS:
        raise _Bad("reason.evidence", f"more than {MAX_EVIDENCE_FIELDS} fields")
    for name, value in evidence.items():
        # flat: numbers and short strings (the law's numbers), never nested documents, which
        # would cost every reader a deep walk and fail re-serialization (canonical bytes)
        if not isinstance(value, int | float | str) or (
            isinstance(value, str) and len(value) > MAX_EVIDENCE_STR
        ):
            raise _Bad(
                f"reason.evidence.{str(name)[:64]}",
                f"must be a number or a string of at most {MAX_EVIDENCE_STR} characters",
            )
    reason = Reason(
        detector=_str(reason_doc, "detector", "reason."),
        score=_num(reason_doc, "score", 0.0, "reason."),
        evidence=evidence,
    )
    issued_ms = _int(doc, "issued_ms")
    expires_ms = _int(doc, "expires_ms")
    if expires_ms < issued_ms:
        raise _Bad("expires_ms", "must not be before issued_ms")
    if (why := out_of_range(expires_ms - issued_ms, TTL_MS)) is not None:
        raise _Bad("expires_ms", f"lifetime (expires_ms - issued_ms) {why}")
    return Directive(
        id=_str(doc, "id"),
        issued_ms=issued_ms,
        expires_ms=expires_ms,
        scope=scope,
        action=action,
        reason=reason,
    )


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _obj(doc: dict[str, Any], key: str) -> dict[str, Any]:
    v = doc.get(key)
    if not isinstance(v, dict):
        raise _Bad(key, "must be an object")
    return v


def _str(doc: dict[str, Any], key: str, prefix: str = "") -> str:
    v = doc.get(key)
    if not isinstance(v, str) or not v:
        raise _Bad(prefix + key, "must be a non-empty string")
    return v


def _opt_str(doc: dict[str, Any], key: str, prefix: str = "") -> str | None:
    v = doc.get(key)
    if v is not None and not isinstance(v, str):
        raise _Bad(prefix + key, "must be a string")
    return v


def _int(doc: dict[str, Any], key: str, prefix: str = "") -> int:
    v = doc.get(key)
    if type(v) is not int or v < 0:
        raise _Bad(prefix + key, "must be a non-negative integer")
    bounds = _BOUNDS.get(prefix + key)
    if bounds is not None and (why := out_of_range(v, bounds)) is not None:
        raise _Bad(prefix + key, why)
    return v


def _opt_int(doc: dict[str, Any], key: str, prefix: str = "") -> int | None:
    return None if doc.get(key) is None else _int(doc, key, prefix)


def _num(doc: dict[str, Any], key: str, default: float, prefix: str = "") -> float:
    v = doc.get(key, default)
    if not _is_num(v) or v != v or v < 0:
        raise _Bad(prefix + key, "must be a non-negative number")
    if v > MAX_RATE:
        raise _Bad(prefix + key, f"must be at most {MAX_RATE:g}")
    return float(v)


@dataclass(frozen=True, slots=True)
class Refused:
    """A control message a reader must not apply: ``reason`` is ``malformed``, ``unsigned``
    (a bare directive while signatures are required), ``unknown_key`` or ``forged``."""

    reason: str
    error: DecodeError | None = None


def open_control(
    data: bytes | bytearray | memoryview | str,
    ring: Keyring | None,
    *,
    allow_unsigned: bool,
    verify: bool = True,
) -> Directive | Heartbeat | Refused:
    """Decode a control message and apply the signature rules: a signed envelope must verify
    with ``ring`` (``verify=False``: only decoded, for a reader that records what was sent), a
    bare directive is accepted only with ``allow_unsigned``, heartbeats always (they can never
    constrain traffic)."""
    msg = decode_control(data)
    if isinstance(msg, DecodeError):
        return Refused("malformed", msg)
    if isinstance(msg, Heartbeat):
        return msg
    if isinstance(msg, Directive):
        return msg if allow_unsigned else Refused("unsigned")
    if verify:
        if ring is None:
            return Refused("unknown_key")
        why = ring.check(msg)
        if why is not None:
            return Refused(why)
    inner = decode_directive(msg.payload)
    if isinstance(inner, DecodeError):
        return Refused("malformed", inner)
    return replace(inner, sig=msg.kid)
