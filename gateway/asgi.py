"""ASGI middleware: admit every HTTP request through a gateway and emit its event.

Pure ASGI (works with Starlette, FastAPI or any ASGI app)::

    app = FlyballMiddleware(app, gateway)

Per request: classify (default: ``x-flyball-*`` headers, endpoint ``"METHOD /path"``), ``admit``,
then

- admit: call the app;
- defer: ``await asyncio.sleep(delay)``, then call the app;
- reject: answer ``429`` (throttle or shed) with ``Retry-After`` (seconds, rounded up) and
  ``x-flyball-retry-after-ms``, without calling the app;
- reroute: ``reroute(target)`` may return another ASGI app to serve the request; without one the
  answer is ``503`` with ``Retry-After`` and ``x-flyball-reroute: target``.

When the response ends an event is emitted: ``ts_ms`` = when the request went to the app (after
any defer hold), ``latency_ms`` = app time (so the governor's latency signal is the service's,
not its own hold, and ``ts_ms + latency_ms`` is the true completion time the core windows on),
status ``error`` for 5xx, 429 and exceptions, ``rejected`` for requests answered by the gateway.
Websocket and lifespan scopes pass through untouched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from flyball.clock import wall_ms
from gateway.enforce import ADMIT, DEFER_KIND, QUEUE_KIND, REJECT_KIND, Decision
from gateway.events import RequestEvent, request_event, status_of_http
from gateway.headers import (
    DECISION,
    DIRECTIVE,
    REROUTE,
    RETRY_AFTER_MS,
    RequestInfo,
    info_from_headers,
    retry_after_seconds,
)
from gateway.trust import HeaderTrust, RetryMemory, believed
from schemas.columns import APPLIED_CODES, STATUS_ERROR, STATUS_REJECTED

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SHED = APPLIED_CODES["shed"]


class GatewayLike(Protocol):
    gateway_id: str

    def admit(
        self,
        endpoint: str,
        tenant: str = "",
        agent_id: str = "",
        priority: int = 0,
        attempt: int = 0,
        depth: int = 0,
    ) -> Decision: ...

    def wait_slot(self, d: Decision, priority: int = 0) -> Decision: ...

    async def wait_slot_async(self, d: Decision, priority: int = 0) -> Decision: ...

    def done(self, d: Decision) -> None: ...

    def emit(self, event: RequestEvent) -> None: ...


def default_endpoint(scope: Scope) -> str:
    return f"{scope['method']} {scope['path']}"


def default_classify(
    endpoint_of: Callable[[Scope], str] = default_endpoint,
    trust: HeaderTrust | None = None,
    clock_ms: Callable[[], int] = wall_ms,
) -> Callable[[Scope], RequestInfo]:
    """A classifier reading the ``x-flyball-*`` headers; ``endpoint_of`` names the endpoint.
    Priority and attempt are believed from ``trust``'s networks only (``gateway.trust``;
    default: loopback); from other clients a priority is at best ``untrusted_min_priority`` and a
    repeated request id counts as a retry."""
    trust = trust if trust is not None else HeaderTrust()
    memory = RetryMemory()

    def classify(scope: Scope) -> RequestInfo:
        headers = ((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        info = info_from_headers(endpoint_of(scope), headers)
        client = scope.get("client")
        host = client[0] if client else None
        return believed(info, trust.trusts(host), trust, memory, clock_ms())

    return classify


def starlette_endpoint(app: Any, max_cache: int = 4096) -> Callable[[Scope], str]:
    """``endpoint_of`` naming requests by the Starlette/FastAPI route template they match
    (``"GET /items/{item_id}"``), falling back to the raw path. Bounded cache by (method, path).
    """
    from starlette.routing import Match

    routes = list(getattr(app, "routes", ()))
    cache: dict[tuple[str, str], str] = {}

    def endpoint_of(scope: Scope) -> str:
        key = (scope["method"], scope["path"])
        ep = cache.get(key)
        if ep is None:
            ep = f"{key[0]} {key[1]}"
            for route in routes:
                match, _ = route.matches(scope)
                if match is Match.FULL and hasattr(route, "path"):
                    ep = f"{key[0]} {route.path}"
                    break
            if len(cache) >= max_cache:
                cache.clear()
            cache[key] = ep
        return ep

    return endpoint_of


class FlyballMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        gateway: GatewayLike,
        *,
        classify: Callable[[Scope], RequestInfo] | None = None,
        reroute: Callable[[str], ASGIApp | None] | None = None,
        reject_status: int = 429,
        reroute_status: int = 503,
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self.app = app
        self.gateway = gateway
        self._classify = classify if classify is not None else default_classify()
        self._reroute = reroute
        self._reject_status = reject_status
        self._reroute_status = reroute_status
        self._clock_ms = clock_ms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        info = self._classify(scope)
        gw = self.gateway
        ts_ms = self._clock_ms()
        d = gw.admit(
            info.endpoint, info.tenant, info.agent_id, info.priority, info.attempt, info.depth
        )
        app = self.app
        if d.kind == QUEUE_KIND:  # a concurrency limit is full: wait for a slot
            d = await gw.wait_slot_async(d, info.priority)
            ts_ms = self._clock_ms()
        if d is not ADMIT:
            kind = d.kind
            if kind == DEFER_KIND:
                if d.delay_ms > 0:
                    await asyncio.sleep(d.delay_ms / 1000)
                    ts_ms = self._clock_ms()  # the attempt starts when it goes upstream
            elif kind == REJECT_KIND:
                await _answer(send, self._reject_status, d, d.retry_after_ms)
                gw.emit(request_event(info, ts_ms, 0, STATUS_REJECTED, d.directive_id, d.applied))
                return
            elif kind != "admit":  # reroute
                other = self._reroute(d.target) if self._reroute is not None else None
                if other is None:
                    await _answer(send, self._reroute_status, d, 1000)
                    gw.emit(
                        request_event(info, ts_ms, 0, STATUS_REJECTED, d.directive_id, d.applied)
                    )
                    return
                app = other
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        t0 = time.perf_counter_ns()
        try:
            await app(scope, receive, send_status)
        except BaseException:
            latency_ms = (time.perf_counter_ns() - t0) // 1_000_000
            gw.emit(request_event(info, ts_ms, latency_ms, STATUS_ERROR, d.directive_id, d.applied))
            raise
        finally:
            gw.done(d)  # the app is done with it: its concurrency slot is free
        latency_ms = (time.perf_counter_ns() - t0) // 1_000_000
        code = status_of_http(status) if status else STATUS_ERROR  # no response sent: an error
        gw.emit(request_event(info, ts_ms, latency_ms, code, d.directive_id, d.applied))


async def _answer(send: Send, status: int, d: Decision, retry_after_ms: int) -> None:
    body = (
        b'{"error":"'
        + (b"shed" if d.applied == _SHED else d.kind.encode())
        + b'","retry_after_ms":'
        + str(retry_after_ms).encode()
        + b',"directive":"'
        + d.directive_id.encode()
        + b'"}'
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", retry_after_seconds(retry_after_ms).encode()),
        (RETRY_AFTER_MS.encode(), str(retry_after_ms).encode()),
        (DECISION.encode(), d.kind.encode()),
        (DIRECTIVE.encode(), d.directive_id.encode()),
    ]
    if d.target:
        headers.append((REROUTE.encode(), d.target.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
