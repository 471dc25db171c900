"""Request context carried in ``x-flyball-*`` headers, shared by the ASGI middleware and the
httpx transport (an agent's client sets them; the server-side gateway reads the same ones).

| header | meaning |
|---|---|
| ``x-flyball-tenant`` | tenant |
| ``x-flyball-agent`` | agent id |
| ``x-flyball-priority`` | 0 (most important) .. 9 |
| ``x-flyball-attempt`` | 0 = first attempt, 1 = first retry, ... |
| ``x-flyball-depth`` | 0 = a root intent's own request, 1 = its sub-requests, ... |
| ``x-flyball-root`` | root intent id |
| ``x-flyball-parent`` | parent request id |
| ``x-flyball-request`` (or ``x-request-id``) | this request's id |

Bad numbers fall back to 0 and are clamped to the event schema's ranges; a header never makes a
request fail.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final, NamedTuple

TENANT: Final = "x-flyball-tenant"
AGENT: Final = "x-flyball-agent"
PRIORITY: Final = "x-flyball-priority"
ATTEMPT: Final = "x-flyball-attempt"
DEPTH: Final = "x-flyball-depth"
ROOT: Final = "x-flyball-root"
PARENT: Final = "x-flyball-parent"
REQUEST: Final = "x-flyball-request"
REQUEST_ID: Final = "x-request-id"
DECISION: Final = "x-flyball-decision"
RETRY_AFTER_MS: Final = "x-flyball-retry-after-ms"
DIRECTIVE: Final = "x-flyball-directive"
REROUTE: Final = "x-flyball-reroute"

_MAX: Final[dict[str, int]] = {PRIORITY: 9, ATTEMPT: 10_000, DEPTH: 1_000}


class RequestInfo(NamedTuple):
    """What a gateway knows about one request before deciding (and records in its event)."""

    endpoint: str
    tenant: str = ""
    agent_id: str = ""
    priority: int = 0
    attempt: int = 0
    depth: int = 0
    request_id: str = ""
    root_id: str = ""
    parent_id: str = ""


def _int(value: str, name: str) -> int:
    try:
        n = int(value)
    except ValueError:
        return 0
    return 0 if n < 0 else min(n, _MAX[name])


def info_from_headers(endpoint: str, headers: Iterable[tuple[str, str]]) -> RequestInfo:
    """Build a ``RequestInfo`` from (lower-case name, value) pairs."""
    tenant = agent = request_id = root = parent = ""
    priority = attempt = depth = 0
    for name, value in headers:
        if name.startswith("x-flyball-"):
            if name == TENANT:
                tenant = value
            elif name == AGENT:
                agent = value
            elif name == PRIORITY:
                priority = _int(value, PRIORITY)
            elif name == ATTEMPT:
                attempt = _int(value, ATTEMPT)
            elif name == DEPTH:
                depth = _int(value, DEPTH)
            elif name == ROOT:
                root = value
            elif name == PARENT:
                parent = value
            elif name == REQUEST:
                request_id = value
        elif name == REQUEST_ID and not request_id:
            request_id = value
    return RequestInfo(endpoint, tenant, agent, priority, attempt, depth, request_id, root, parent)


def retry_after_seconds(retry_after_ms: int) -> str:
    """HTTP ``Retry-After`` (whole seconds, rounded up)."""
    return str(math.ceil(retry_after_ms / 1000)) if retry_after_ms > 0 else "0"
