"""Column-oriented request events: the shape the core computes on.

A batch of request events is a set of equal-length numpy arrays, one per field. Numeric fields are
fixed-width integers; identifiers are numpy object arrays of ``str``. This is what the frame codec
decodes into, what the simulator produces and what ``detectors`` consume. No request content is
ever part of it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final

import numpy as np
import numpy.typing as npt

# Status classes of one request attempt, as small integer codes on the hot path.
STATUS_OK: Final = 0
STATUS_ERROR: Final = 1
STATUS_TIMEOUT: Final = 2
STATUS_REJECTED: Final = 3
STATUS_NAMES: Final[tuple[str, ...]] = ("ok", "error", "timeout", "rejected")
STATUS_CODES: Final[dict[str, int]] = {name: code for code, name in enumerate(STATUS_NAMES)}

# Action a gateway applied to the attempt ("" = none), as small integer codes.
APPLIED_NAMES: Final[tuple[str, ...]] = ("", "throttle", "defer", "shed", "reroute")
APPLIED_CODES: Final[dict[str, int]] = {name: code for code, name in enumerate(APPLIED_NAMES)}

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
I16 = npt.NDArray[np.int16]
I8 = npt.NDArray[np.int8]
Obj = npt.NDArray[np.object_]

# field name -> numpy dtype; object columns hold str.
NUMERIC_DTYPES: Final[dict[str, type[np.generic]]] = {
    "ts_ms": np.int64,
    "latency_ms": np.int64,
    "status": np.int8,
    "attempt": np.int16,
    "depth": np.int16,
    "priority": np.int8,
    "tokens_in": np.int64,
    "tokens_out": np.int64,
    "applied": np.int8,
}
STRING_FIELDS: Final[tuple[str, ...]] = (
    "event_id",
    "gateway_id",
    "tenant",
    "agent_id",
    "endpoint",
    "request_id",
    "root_id",
    "parent_id",
    "directive_id",
)


@dataclass(frozen=True, slots=True)
class EventColumns:
    """A batch of request events, one numpy array per field (all the same length).

    - ``ts_ms``: attempt start, epoch milliseconds (event time).
    - ``latency_ms``: attempt duration in ms (0 for rejected-at-gateway attempts).
    - ``status``: ``STATUS_OK`` / ``STATUS_ERROR`` / ``STATUS_TIMEOUT`` / ``STATUS_REJECTED``.
    - ``attempt``: 0 for the first attempt of a request, 1 for the first retry, ...
    - ``depth``: 0 for a root intent's own request, 1 for its sub-requests, ...
    - ``priority``: 0 is the most important; larger numbers are less important (0..9).
    - ``applied``: code of the directive action the gateway applied (``APPLIED_NAMES``).
    """

    event_id: Obj
    gateway_id: Obj
    ts_ms: I64
    latency_ms: I64
    tenant: Obj
    agent_id: Obj
    endpoint: Obj
    status: I8
    attempt: I16
    request_id: Obj
    root_id: Obj
    parent_id: Obj
    depth: I16
    priority: I8
    tokens_in: I64
    tokens_out: I64
    directive_id: Obj
    applied: I8

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    def take(self, index: npt.NDArray[Any]) -> EventColumns:
        """Rows selected by an integer index or boolean mask, as a new batch."""
        return EventColumns(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def __getitem__(self, rows: slice) -> EventColumns:
        """A contiguous range of rows (views of the columns, no copy)."""
        return EventColumns(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def as_dict(self) -> dict[str, np.ndarray[Any, Any]]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @staticmethod
    def empty() -> EventColumns:
        return EventColumns.from_arrays({})

    @staticmethod
    def from_arrays(cols: dict[str, Any], n: int | None = None) -> EventColumns:
        """Build a batch from array-likes; missing fields get defaults (0 / "").

        ``n`` is the row count when every column may be missing.
        """
        if n is None:
            n = len(next(iter(cols.values()))) if cols else 0
        out: dict[str, Any] = {}
        for name, dtype in NUMERIC_DTYPES.items():
            v = cols.get(name)
            out[name] = np.zeros(n, dtype=dtype) if v is None else np.asarray(v, dtype=dtype)
        for name in STRING_FIELDS:
            v = cols.get(name)
            if v is None:
                arr = np.empty(n, dtype=object)
                arr[:] = ""
            else:
                arr = np.asarray(v, dtype=object)
            out[name] = arr
        for name, arr in out.items():
            if arr.shape != (n,):
                raise ValueError(f"column {name!r} has shape {arr.shape}, expected ({n},)")
        return EventColumns(**out)

    @staticmethod
    def concat(batches: list[EventColumns]) -> EventColumns:
        if not batches:
            return EventColumns.empty()
        if len(batches) == 1:
            return batches[0]
        return EventColumns(
            **{
                f.name: np.concatenate([getattr(b, f.name) for b in batches])
                for f in fields(EventColumns)
            }
        )


FIELD_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in fields(EventColumns))
