"""httpx transports for agent-side clients: admit each outgoing call and emit its event.

::

    client = httpx.Client(transport=FlyballTransport(gateway))
    client = httpx.AsyncClient(transport=AsyncFlyballTransport(gateway))

Per call: classify (default: the request's ``x-flyball-*`` headers, endpoint
``"METHOD host/path"``), ``admit``, then

- defer: sleep (``time.sleep`` / ``asyncio.sleep``) and send;
- reject: no network call; a synthetic ``429`` response with ``Retry-After`` (and
  ``x-flyball-decision: reject``) is returned, so the client's usual back-off handles it;
- reroute: the call goes to ``target`` instead: a base URL (``"http://backup:8080"``) replaces
  scheme, host and port; a bare ``"host[:port]"`` replaces host and port.

The event is emitted when the response headers arrive (``latency_ms`` = time to headers, excluding
a deliberate defer); a timeout is status ``timeout``, another transport error, a 5xx or a 429 is
``error``. The ``x-flyball-*`` headers are forwarded, so a Flyball middleware on the server side
sees the same context.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from flyball.clock import wall_ms
from gateway.asgi import GatewayLike
from gateway.enforce import ADMIT, DEFER_KIND, QUEUE_KIND, REJECT_KIND, Decision
from gateway.events import request_event, status_of_http
from gateway.headers import (
    DECISION,
    DIRECTIVE,
    RETRY_AFTER_MS,
    RequestInfo,
    info_from_headers,
    retry_after_seconds,
)
from schemas.columns import STATUS_ERROR, STATUS_REJECTED, STATUS_TIMEOUT


def default_endpoint(request: httpx.Request) -> str:
    return f"{request.method} {request.url.host}{request.url.path}"


def default_classify(
    endpoint_of: Callable[[httpx.Request], str] = default_endpoint,
) -> Callable[[httpx.Request], RequestInfo]:
    def classify(request: httpx.Request) -> RequestInfo:
        headers = (
            (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.headers.raw
        )
        return info_from_headers(endpoint_of(request), headers)

    return classify


def reroute_url(url: httpx.URL, target: str) -> httpx.URL:
    """``url`` sent to ``target`` (a base URL, or ``host[:port]`` keeping the scheme)."""
    t = httpx.URL(target if "://" in target else f"{url.scheme}://{target}")
    return url.copy_with(scheme=t.scheme, host=t.host, port=t.port)


def _rejected(request: httpx.Request, d: Decision) -> httpx.Response:
    return httpx.Response(
        429,
        headers={
            "retry-after": retry_after_seconds(d.retry_after_ms),
            RETRY_AFTER_MS: str(d.retry_after_ms),
            DECISION: d.kind,
            DIRECTIVE: d.directive_id,
        },
        json={"error": "rejected by flyball", "retry_after_ms": d.retry_after_ms},
        request=request,
    )


def _redirect(request: httpx.Request, target: str) -> None:
    request.url = reroute_url(request.url, target)
    request.headers["host"] = request.url.netloc.decode("ascii")


class _Base:
    def __init__(
        self,
        gateway: GatewayLike,
        *,
        classify: Callable[[httpx.Request], RequestInfo] | None = None,
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self.gateway = gateway
        self._classify = classify if classify is not None else default_classify()
        self._clock_ms = clock_ms

    def _decide(self, request: httpx.Request) -> tuple[RequestInfo, Decision, int]:
        info = self._classify(request)
        d = self.gateway.admit(
            info.endpoint, info.tenant, info.agent_id, info.priority, info.attempt, info.depth
        )
        return info, d, self._clock_ms()

    def _emit(
        self, info: RequestInfo, d: Decision, ts_ms: int, t0_ns: int, status: int
    ) -> None:
        latency_ms = (time.perf_counter_ns() - t0_ns) // 1_000_000
        self.gateway.emit(request_event(info, ts_ms, latency_ms, status, d.directive_id, d.applied))

    def _emit_rejected(self, info: RequestInfo, d: Decision, ts_ms: int) -> None:
        self.gateway.emit(request_event(info, ts_ms, 0, STATUS_REJECTED, d.directive_id, d.applied))


class FlyballTransport(_Base, httpx.BaseTransport):
    """Synchronous transport wrapping ``transport`` (default ``httpx.HTTPTransport()``)."""

    def __init__(
        self,
        gateway: GatewayLike,
        transport: httpx.BaseTransport | None = None,
        *,
        classify: Callable[[httpx.Request], RequestInfo] | None = None,
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        super().__init__(gateway, classify=classify, clock_ms=clock_ms)
        self.transport = transport if transport is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        info, d, ts_ms = self._decide(request)
        if d.kind == QUEUE_KIND:  # a concurrency limit is full: wait for a slot
            d = self.gateway.wait_slot(d, info.priority)
            ts_ms = self._clock_ms()
        if d is not ADMIT:
            if d.kind == REJECT_KIND:
                self._emit_rejected(info, d, ts_ms)
                return _rejected(request, d)
            if d.kind == DEFER_KIND:
                time.sleep(d.delay_ms / 1000)
                ts_ms = self._clock_ms()  # the attempt starts when it goes upstream
            elif d.target:
                _redirect(request, d.target)
        t0 = time.perf_counter_ns()
        try:
            response = self.transport.handle_request(request)
        except httpx.TimeoutException:
            self._emit(info, d, ts_ms, t0, STATUS_TIMEOUT)
            raise
        except BaseException:
            self._emit(info, d, ts_ms, t0, STATUS_ERROR)
            raise
        finally:
            self.gateway.done(d)  # response headers are in: the slot is free
        self._emit(info, d, ts_ms, t0, status_of_http(response.status_code))
        return response

    def close(self) -> None:
        self.transport.close()


class AsyncFlyballTransport(_Base, httpx.AsyncBaseTransport):
    """asyncio transport wrapping ``transport`` (default ``httpx.AsyncHTTPTransport()``)."""

    def __init__(
        self,
        gateway: GatewayLike,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        classify: Callable[[httpx.Request], RequestInfo] | None = None,
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        super().__init__(gateway, classify=classify, clock_ms=clock_ms)
        self.transport = transport if transport is not None else httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        info, d, ts_ms = self._decide(request)
        if d.kind == QUEUE_KIND:  # a concurrency limit is full: wait for a slot
            d = await self.gateway.wait_slot_async(d, info.priority)
            ts_ms = self._clock_ms()
        if d is not ADMIT:
            if d.kind == REJECT_KIND:
                self._emit_rejected(info, d, ts_ms)
                return _rejected(request, d)
            if d.kind == DEFER_KIND:
                await asyncio.sleep(d.delay_ms / 1000)
                ts_ms = self._clock_ms()  # the attempt starts when it goes upstream
            elif d.target:
                _redirect(request, d.target)
        t0 = time.perf_counter_ns()
        try:
            response = await self.transport.handle_async_request(request)
        except httpx.TimeoutException:
            self._emit(info, d, ts_ms, t0, STATUS_TIMEOUT)
            raise
        except BaseException:
            self._emit(info, d, ts_ms, t0, STATUS_ERROR)
            raise
        finally:
            self.gateway.done(d)  # response headers are in: the slot is free
        self._emit(info, d, ts_ms, t0, status_of_http(response.status_code))
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()
