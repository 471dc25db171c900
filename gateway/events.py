"""Request events as the SDK takes them, and their conversion into frame columns.

``emit()`` only appends the event to a buffer; the conversion to column lists (grouped by partition
key = endpoint, chunked into frames) happens in the shipper's background thread.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable, Mapping
from operator import attrgetter
from typing import Any, Final

from gateway.headers import RequestInfo
from schemas.columns import (
    APPLIED_CODES,
    FIELD_NAMES,
    NUMERIC_DTYPES,
    STATUS_CODES,
    STATUS_ERROR,
    STATUS_OK,
)

_DEFAULTS: Final[tuple[Any, ...]] = tuple(0 if f in NUMERIC_DTYPES else "" for f in FIELD_NAMES)
_I_EVENT_ID: Final = FIELD_NAMES.index("event_id")
_I_ENDPOINT: Final = FIELD_NAMES.index("endpoint")
_I_STATUS: Final = FIELD_NAMES.index("status")
_I_APPLIED: Final = FIELD_NAMES.index("applied")
_I_GATEWAY: Final = FIELD_NAMES.index("gateway_id")


class RequestEvent:
    """One request attempt's metadata (the fields of ``schemas.columns.EventColumns``).

    ``status`` and ``applied`` take a code or a name (``"ok"``, ``"throttle"``). ``event_id`` may
    be left empty: the shipper fills a unique id. After ``emit()`` the gateway owns the object: do
    not change it.
    """

    __slots__ = FIELD_NAMES

    event_id: str
    gateway_id: str
    ts_ms: int
    latency_ms: int
    tenant: str
    agent_id: str
    endpoint: str
    status: int | str
    attempt: int
    request_id: str
    root_id: str
    parent_id: str
    depth: int
    priority: int
    tokens_in: int
    tokens_out: int
    directive_id: str
    applied: int | str

    def __init__(
        self,
        endpoint: str,
        ts_ms: int,
        status: int | str = 0,
        latency_ms: int = 0,
        tenant: str = "",
        agent_id: str = "",
        attempt: int = 0,
        request_id: str = "",
        root_id: str = "",
        parent_id: str = "",
        depth: int = 0,
        priority: int = 0,
        tokens_in: int = 0,
        tokens_out: int = 0,
        directive_id: str = "",
        applied: int | str = 0,
        event_id: str = "",
        gateway_id: str = "",
    ) -> None:
        self.event_id = event_id
        self.gateway_id = gateway_id
        self.ts_ms = ts_ms
        self.latency_ms = latency_ms
        self.tenant = tenant
        self.agent_id = agent_id
        self.endpoint = endpoint
        self.status = status
        self.attempt = attempt
        self.request_id = request_id
        self.root_id = root_id
        self.parent_id = parent_id
        self.depth = depth
        self.priority = priority
        self.tokens_in = tokens_in
        self.tokens_out = tokens_out
        self.directive_id = directive_id
        self.applied = applied

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(FIELD_NAMES, _row_of_event(self), strict=True))

    def __repr__(self) -> str:
        return f"RequestEvent({self.as_dict()!r})"


_row_of_event: Final = attrgetter(*FIELD_NAMES)


class EventIds:
    """Unique event ids: a random per-process prefix plus a counter (thread-safe under the GIL)."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix if prefix is not None else secrets.token_hex(6) + "-"
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self._counter):x}"


def row_of(event: RequestEvent | Mapping[str, Any]) -> tuple[Any, ...]:
    """The event as a tuple in ``FIELD_NAMES`` order (defaults for missing fields)."""
    if isinstance(event, RequestEvent):
        row: tuple[Any, ...] = _row_of_event(event)
        return row
    return tuple(map(event.get, FIELD_NAMES, _DEFAULTS))


def build_frames(
    events: Iterable[RequestEvent | Mapping[str, Any]],
    gateway_id: str,
    ids: EventIds,
    frame_max_events: int,
) -> tuple[list[tuple[str, dict[str, list[Any]]]], int]:
    """Group events by endpoint into column frames of at most ``frame_max_events`` rows.

    Returns ``([(key, cols), ...], invalid)`` where ``invalid`` counts events dropped for having no
    endpoint (or an unknown status/applied name). Another gateway id than the frame's is kept as a
    column.
    """
    groups: dict[str, list[tuple[Any, ...]]] = {}
    invalid = 0
    for ev in events:
        try:
            row = row_of(ev)
        except (AttributeError, TypeError):
            invalid += 1
            continue
        key = row[_I_ENDPOINT]
        if type(key) is not str or not key:
            invalid += 1
            continue
        if (type(row[_I_STATUS]) is str and row[_I_STATUS] not in STATUS_CODES) or (
            type(row[_I_APPLIED]) is str and row[_I_APPLIED] not in APPLIED_CODES
        ):
            invalid += 1
            continue
        rows = groups.get(key)
        if rows is None:
            groups[key] = [row]
        else:
            rows.append(row)
    frames: list[tuple[str, dict[str, list[Any]]]] = []
    for key, rows in groups.items():
        for start in range(0, len(rows), frame_max_events):
            chunk = rows[start : start + frame_max_events]
            cols = dict(zip(FIELD_NAMES, map(list, zip(*chunk, strict=True)), strict=True))
            _fix_columns(cols, gateway_id, ids)
            frames.append((key, cols))
    return frames, invalid


def _fix_columns(cols: dict[str, list[Any]], gateway_id: str, ids: EventIds) -> None:
    event_id = cols["event_id"]
    for i, v in enumerate(event_id):
        if not v:
            event_id[i] = ids.next()
    for name, codes in (("status", STATUS_CODES), ("applied", APPLIED_CODES)):
        col = cols[name]
        for i, v in enumerate(col):
            if type(v) is str:
                col[i] = codes[v]
    gw = cols["gateway_id"]
    if all(g == "" or g == gateway_id for g in gw):
        del cols["gateway_id"]  # the frame's gateway_id applies
    else:
        cols["gateway_id"] = [g or gateway_id for g in gw]


def status_of_http(code: int) -> int:
    """Status class of an HTTP response: 5xx and 429 are errors (the upstream is struggling)."""
    return STATUS_ERROR if code >= 500 or code == 429 else STATUS_OK


def request_event(
    info: RequestInfo,
    ts_ms: int,
    latency_ms: int,
    status: int,
    directive_id: str = "",
    applied: int = 0,
) -> RequestEvent:
    """The event for one attempt described by ``info``."""
    return RequestEvent(
        info.endpoint,
        ts_ms,
        status,
        latency_ms,
        info.tenant,
        info.agent_id,
        info.attempt,
        info.request_id,
        info.root_id,
        info.parent_id,
        info.depth,
        info.priority,
        0,
        0,
        directive_id,
        applied,
    )
