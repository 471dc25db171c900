"""Decoding feature and score records from their topics (see ``schemas/README.md``).

Like every Flyball decoder it never raises: a bad message becomes a :class:`DecodeError`.
"""

from __future__ import annotations

from typing import Any

from schemas import jsoncodec
from schemas.errors import DecodeError
from schemas.records import RECORD_VERSION, FeatureRecord, ScoreRecord


def decode_feature(data: bytes) -> FeatureRecord | DecodeError:
    doc = _doc(data, "features")
    if isinstance(doc, DecodeError):
        return doc
    values = doc.get("values", {})
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and _is_num(v) for k, v in values.items()
    ):
        return DecodeError("must map feature names to numbers", "values")
    bad = _check(doc, ints=("ts_ms", "horizon_ms"), strs=("endpoint", "tenant"))
    if bad is not None:
        return bad
    return FeatureRecord(
        ts_ms=doc["ts_ms"],
        horizon_ms=doc["horizon_ms"],
        endpoint=doc["endpoint"],
        tenant=doc.get("tenant", ""),
        values={k: float(v) for k, v in values.items()},
    )


def decode_score(data: bytes) -> ScoreRecord | DecodeError:
    doc = _doc(data, "score")
    if isinstance(doc, DecodeError):
        return doc
    bad = _check(doc, ints=("ts_ms",), strs=("detector", "endpoint", "tenant"))
    if bad is not None:
        return bad
    score = doc.get("score")
    if not isinstance(score, int | float) or isinstance(score, bool) or score != score:
        return DecodeError("must be a number", "score")
    evidence = doc.get("evidence", {})
    if not isinstance(evidence, dict):
        return DecodeError("must be an object", "evidence")
    return ScoreRecord(
        ts_ms=doc["ts_ms"],
        detector=doc["detector"],
        endpoint=doc["endpoint"],
        tenant=doc.get("tenant", ""),
        score=float(score),
        evidence=evidence,
    )


def _doc(data: bytes, kind: str) -> dict[str, Any] | DecodeError:
    doc = jsoncodec.load_object(data)
    if isinstance(doc, DecodeError):
        return doc
    if doc.get("v", RECORD_VERSION) != RECORD_VERSION:
        return DecodeError(f"unsupported version {doc.get('v')!r} (this reader knows v=1)", "v")
    if doc.get("kind", kind) != kind:
        return DecodeError(f"expected kind {kind!r}, got {doc.get('kind')!r}", "kind")
    return doc


def _check(doc: dict[str, Any], ints: tuple[str, ...], strs: tuple[str, ...]) -> DecodeError | None:
    for name in ints:
        v = doc.get(name)
        if type(v) is not int or v < 0:
            return DecodeError("must be a non-negative integer", name)
    # "" is meaningful for the key parts: tenant "" = the endpoint as a whole, endpoint "" = the
    # tenant across endpoints (the governor's three key levels); one of the two must be set.
    key_parts = ("endpoint", "tenant")
    for name in strs:
        optional = name in key_parts
        v = doc.get(name, "" if optional else None)
        if not isinstance(v, str) or (not optional and not v):
            return DecodeError(
                "must be a string" if optional else "must be a non-empty string", name
            )
    if not doc.get("endpoint") and not doc.get("tenant"):
        return DecodeError("endpoint and tenant are both empty: the record has no key", "endpoint")
    return None


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
