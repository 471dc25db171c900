"""Request events on the wire: column-oriented frames and plain single-event JSON.

A **frame** carries many events from one gateway for one partition key in one Kafka message::

    {"v": 1, "kind": "frame", "gateway_id": "gw-1", "key": "POST /v1/chat", "n": 2,
     "cols": {"event_id": ["a1", "a2"], "ts_ms": [1700000000000, 1700000000005], ...}}

Every column is a JSON array of length ``n``. ``gateway_id`` may be given once for the frame or as
a column. A plain **single event** is a JSON object with the fields as keys
(``"kind": "event"`` or no ``kind``), so any Kafka client (kcat) can be a gateway; ``status``
may be a name (``"ok"``) or its code, ``applied`` likewise. Field by field: ``schemas/README.md``.

Decoding never raises: it returns the valid rows as :class:`EventColumns` and a list of
:class:`DecodeError` for the rest. Validation is vectorised over the columns; one bad event in a
frame rejects only that event.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from schemas import jsoncodec
from schemas.bounds import EVENT_RANGES
from schemas.columns import (
    APPLIED_CODES,
    FIELD_NAMES,
    NUMERIC_DTYPES,
    STATUS_CODES,
    STRING_FIELDS,
    EventColumns,
)
from schemas.errors import DecodeError

EVENT_VERSION: Final = 1
MAX_ROWS_LISTED: Final = 20

REQUIRED: Final[tuple[str, ...]] = ("ts_ms", "endpoint", "status")
_NAMED_CODES: Final[dict[str, dict[str, int]]] = {"status": STATUS_CODES, "applied": APPLIED_CODES}


@dataclass(slots=True)
class DecodeResult:
    """Valid rows of one message and what was wrong with the rest."""

    events: EventColumns
    errors: list[DecodeError] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return sum(e.count for e in self.errors)


def _message_error(reason: str, where: str = "message") -> DecodeResult:
    return DecodeResult(EventColumns.empty(), [DecodeError(reason, where)])


def decode_message(data: bytes | bytearray | memoryview | str) -> DecodeResult:
    """Decode one message of the events topic: a frame or a single event."""
    doc = jsoncodec.load_object(data)
    if isinstance(doc, DecodeError):
        return DecodeResult(EventColumns.empty(), [doc])
    v = doc.get("v", EVENT_VERSION)
    if v != EVENT_VERSION:
        return _message_error(f"unsupported version v={v!r} (this reader knows v=1)", "v")
    kind = doc.get("kind", "event")
    if kind == "frame":
        return decode_frame_doc(doc)
    if kind == "event":
        cols = {k: [val] for k, val in doc.items() if k not in ("v", "kind")}
        return _decode_columns(cols, 1, frame_gateway=None)
    return _message_error(f"unknown kind {kind!r} (expected 'frame' or 'event')", "kind")


def decode_frame_doc(doc: dict[str, Any]) -> DecodeResult:
    cols = doc.get("cols")
    if not isinstance(cols, dict):
        return _message_error("frame has no 'cols' object", "cols")
    n = doc.get("n")
    lengths = {len(c) for c in cols.values() if isinstance(c, list)}
    if n is None:
        n = lengths.pop() if len(lengths) == 1 else None
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        return _message_error("frame needs 'n' (row count) or columns of one length", "n")
    for name, col in cols.items():
        if not isinstance(col, list) or len(col) != n:
            return _message_error(f"column must be an array of n={n} values", str(name))
    gateway = doc.get("gateway_id")
    if gateway is not None and not isinstance(gateway, str):
        return _message_error("frame gateway_id must be a string", "gateway_id")
    return _decode_columns(cols, n, frame_gateway=gateway)


def _decode_columns(cols: dict[str, Any], n: int, frame_gateway: str | None) -> DecodeResult:
    errors: list[DecodeError] = []
    bad = np.zeros(n, dtype=bool)
    unknown = sorted(set(cols) - set(FIELD_NAMES))
    if unknown:
        return _message_error(f"unknown field(s) {unknown}", unknown[0])
    for name in REQUIRED:
        if name not in cols:
            return _message_error("required field is missing", name)

    def reject(mask: npt.NDArray[np.bool_], where: str, reason: str) -> None:
        new = mask & ~bad
        count = int(new.sum())
        if count:
            rows = tuple(int(i) for i in np.flatnonzero(new)[:MAX_ROWS_LISTED])
            errors.append(DecodeError(reason, where, rows, count))
            bad[new] = True

    out: dict[str, Any] = {}
    for name, dtype in NUMERIC_DTYPES.items():
        raw = cols.get(name)
        if raw is None:
            out[name] = np.zeros(n, dtype=dtype)
            continue
        values, invalid = _integers(raw, _NAMED_CODES.get(name))
        reject(invalid, name, "must be an integer" + _names_hint(name))
        lo, hi = EVENT_RANGES[name]
        reject(~invalid & ((values < lo) | (values > hi)), name, f"out of range [{lo}, {hi}]")
        out[name] = values.astype(dtype)
    for name in STRING_FIELDS:
        raw = cols.get(name)
        if raw is None:
            arr = np.empty(n, dtype=object)
            arr[:] = frame_gateway if (name == "gateway_id" and frame_gateway) else ""
            out[name] = arr
            continue
        arr = np.array(raw, dtype=object) if n else np.empty(0, dtype=object)
        not_str = np.fromiter((type(x) is not str for x in raw), dtype=bool, count=n)
        reject(not_str, name, "must be a string")
        arr[not_str] = ""
        out[name] = arr
    reject(out["endpoint"] == "", "endpoint", "must not be empty")
    events = EventColumns(**out)
    if bad.any():
        events = events.take(~bad)
    if "event_id" not in cols or (events.event_id == "").any():
        events = _fill_event_ids(events)
    return DecodeResult(events, errors)


def _names_hint(name: str) -> str:
    names = _NAMED_CODES.get(name)
    return f" or one of {sorted(k for k in names if k)}" if names else ""


def _integers(
    raw: list[Any], names: dict[str, int] | None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Column -> (int64 values, invalid mask). Fast when the column is all integers."""
    n = len(raw)
    try:
        arr = np.asarray(raw)
    except (ValueError, TypeError):
        arr = np.empty(0)
    if arr.shape == (n,) and arr.dtype.kind in "iu":
        return arr.astype(np.int64), np.zeros(n, dtype=bool)
    if arr.shape == (n,) and arr.dtype.kind == "f":
        ok = np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) < 2**62)
        return np.where(ok, arr, 0).astype(np.int64), ~ok
    values = np.zeros(n, dtype=np.int64)
    invalid = np.zeros(n, dtype=bool)
    for i, x in enumerate(raw):  # slow path: only for mixed or named columns
        if type(x) is int:
            values[i] = x if -(2**62) < x < 2**62 else -1
        elif type(x) is float and x.is_integer() and abs(x) < 2**62:
            values[i] = int(x)
        elif names is not None and type(x) is str and x in names:
            values[i] = names[x]
        else:
            invalid[i] = True
    return values, invalid


def _fill_event_ids(events: EventColumns) -> EventColumns:
    """Derive a deterministic id where a producer gave none (replays then dedupe the same)."""
    ids = events.event_id.copy()
    for i in np.flatnonzero(ids == ""):
        basis = (
            f"{events.gateway_id[i]}|{events.request_id[i]}|{events.attempt[i]}|"
            f"{events.ts_ms[i]}|{events.endpoint[i]}|{events.agent_id[i]}"
        )
        ids[i] = hashlib.blake2b(basis.encode(), digest_size=12).hexdigest()
    cols = events.as_dict()
    cols["event_id"] = ids
    return EventColumns(**cols)


def encode_frame(gateway_id: str, key: str, cols: dict[str, list[Any]]) -> bytes:
    """A frame message from column lists (every list the same length)."""
    n = len(next(iter(cols.values()))) if cols else 0
    return jsoncodec.dumps(
        {
            "v": EVENT_VERSION,
            "kind": "frame",
            "gateway_id": gateway_id,
            "key": key,
            "n": n,
            "cols": cols,
        }
    )


def encode_columns(gateway_id: str, key: str, events: EventColumns) -> bytes:
    """A frame message from an :class:`EventColumns` batch (numpy arrays serialised directly)."""
    cols = {k: (v.tolist() if v.dtype == object else v) for k, v in events.as_dict().items()}
    return jsoncodec.dumps(
        {
            "v": EVENT_VERSION,
            "kind": "frame",
            "gateway_id": gateway_id,
            "key": key,
            "n": len(events),
            "cols": cols,
        }
    )


def encode_event(event: dict[str, Any]) -> bytes:
    """A single-event message (what a non-SDK gateway may produce)."""
    return jsoncodec.dumps({"v": EVENT_VERSION, "kind": "event", **event})
