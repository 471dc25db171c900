"""ASGI middleware and httpx transports, in process (a fake gateway over the real table)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from gw_helpers import FakeGateway, make_directive, now_ms
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from gateway.asgi import FlyballMiddleware, default_classify, starlette_endpoint
from gateway.httpx_transport import AsyncFlyballTransport, FlyballTransport, reroute_url
from schemas.columns import APPLIED_CODES, STATUS_ERROR, STATUS_OK, STATUS_REJECTED, STATUS_TIMEOUT
from schemas.directive import Action, Scope


async def item(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["item_id"]})


async def boom(request: Request) -> PlainTextResponse:
    raise RuntimeError("boom")


async def busy(request: Request) -> PlainTextResponse:
    return PlainTextResponse("busy", status_code=503)


def starlette_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/items/{item_id}", item),
            Route("/boom", boom),
            Route("/busy", busy),
        ]
    )


def wrap(gw: FakeGateway, **kw: object) -> FlyballMiddleware:
    inner = starlette_app()
    return FlyballMiddleware(
        inner, gw, classify=default_classify(starlette_endpoint(inner)), **kw  # type: ignore[arg-type]
    )


async def get(app: object, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, headers=headers or {})


HEADERS = {
    "x-flyball-tenant": "acme",
    "x-flyball-agent": "planner-1",
    "x-flyball-priority": "7",
    "x-flyball-attempt": "2",
    "x-flyball-depth": "1",
    "x-flyball-root": "root-9",
    "x-flyball-parent": "req-8",
    "x-request-id": "req-9",
}


def test_admitted_request_emits_its_event(fake_gateway: FakeGateway) -> None:
    r = asyncio.run(get(wrap(fake_gateway), "/items/42", HEADERS))
    assert r.status_code == 200 and r.json() == {"id": "42"}
    (ev,) = fake_gateway.events
    assert ev.endpoint == "GET /items/{item_id}"
    assert (ev.tenant, ev.agent_id, ev.priority, ev.attempt, ev.depth) == (
        "acme", "planner-1", 7, 2, 1,
    )
    assert (ev.root_id, ev.parent_id, ev.request_id) == ("root-9", "req-8", "req-9")
    assert ev.status == STATUS_OK and ev.latency_ms >= 0 and abs(ev.ts_ms - now_ms()) < 5_000


def test_errors_and_upstream_busy_are_errors(fake_gateway: FakeGateway) -> None:
    app = wrap(fake_gateway)
    assert asyncio.run(get(app, "/boom")).status_code == 500
    assert asyncio.run(get(app, "/busy")).status_code == 503
    assert [e.status for e in fake_gateway.events] == [STATUS_ERROR, STATUS_ERROR]


def test_reject_answers_429_with_retry_after(fake_gateway: FakeGateway) -> None:
    d = make_directive(
        Action("shed", fraction=1.0, retry_after_ms=1_500),
        Scope(endpoint="GET /items/{item_id}", tenant="acme"),
    )
    fake_gateway.table.apply(d, now_ms())
    r = asyncio.run(get(wrap(fake_gateway), "/items/1", HEADERS))
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2" and r.headers["x-flyball-retry-after-ms"] == "1500"
    assert r.headers["x-flyball-directive"] == d.id and r.json()["error"] == "shed"
    (ev,) = fake_gateway.events
    assert ev.status == STATUS_REJECTED and ev.directive_id == d.id
    assert ev.applied == APPLIED_CODES["shed"]
    # Another tenant passes.
    assert asyncio.run(get(wrap(fake_gateway), "/items/1")).status_code == 200


def test_defer_holds_the_request(fake_gateway: FakeGateway) -> None:
    d = make_directive(
        Action("defer", hold_ms=120, jitter_ms=0), Scope(endpoint="GET /items/{item_id}")
    )
    fake_gateway.table.apply(d, now_ms())
    t0 = time.perf_counter()
    arrived_ms = now_ms()
    r = asyncio.run(get(wrap(fake_gateway), "/items/1"))
    assert r.status_code == 200 and time.perf_counter() - t0 >= 0.12
    (ev,) = fake_gateway.events
    assert ev.applied == APPLIED_CODES["defer"] and ev.latency_ms < 100  # the hold is not latency
    # the attempt starts when it goes upstream, so ts + latency is its true completion time
    assert ev.ts_ms >= arrived_ms + 120


def test_transport_defer_stamps_the_attempt_after_the_hold(fake_gateway: FakeGateway) -> None:
    d = make_directive(Action("defer", hold_ms=100, jitter_ms=0), Scope(endpoint="GET svc/v1/x"))
    fake_gateway.table.apply(d, now_ms())
    upstream = httpx.MockTransport(lambda request: httpx.Response(200))
    arrived_ms = now_ms()
    with httpx.Client(transport=FlyballTransport(fake_gateway, upstream)) as client:
        assert client.get("http://svc/v1/x").status_code == 200
    (ev,) = fake_gateway.events
    assert ev.applied == APPLIED_CODES["defer"]
    assert ev.ts_ms >= arrived_ms + 100 and ev.latency_ms < 100


def test_reroute_without_a_handler_is_503_and_with_one_goes_elsewhere(
    fake_gateway: FakeGateway,
) -> None:
    d = make_directive(Action("reroute", target="eu-2"), Scope(endpoint="GET /items/{item_id}"))
    fake_gateway.table.apply(d, now_ms())
    r = asyncio.run(get(wrap(fake_gateway), "/items/1"))
    assert r.status_code == 503 and r.headers["x-flyball-reroute"] == "eu-2"
    other = PlainTextResponse("from eu-2")
    r = asyncio.run(get(wrap(fake_gateway, reroute=lambda target: other), "/items/1"))
    assert r.status_code == 200 and r.text == "from eu-2"


def test_non_http_scopes_pass_through(fake_gateway: FakeGateway) -> None:
    seen = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(scope["type"])

    mw = FlyballMiddleware(app, fake_gateway)  # type: ignore[arg-type]
    asyncio.run(mw({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert seen == ["lifespan"] and fake_gateway.events == []


# --- httpx transports ---


def handler(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/slow":
        raise httpx.ReadTimeout("slow", request=request)
    if request.url.path == "/busy":
        return httpx.Response(429)
    return httpx.Response(200, json={"host": request.url.host, "hdr": request.headers["host"]})


def test_transport_admits_and_emits(fake_gateway: FakeGateway) -> None:
    transport = FlyballTransport(fake_gateway, httpx.MockTransport(handler))
    with httpx.Client(transport=transport) as client:
        assert client.post("http://api.test/v1/chat", headers=HEADERS).status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            client.get("http://api.test/slow")
        assert client.get("http://api.test/busy").status_code == 429
    ok, timeout, busy = fake_gateway.events
    assert ok.endpoint == "POST api.test/v1/chat" and ok.tenant == "acme" and ok.attempt == 2
    assert (ok.status, timeout.status, busy.status) == (STATUS_OK, STATUS_TIMEOUT, STATUS_ERROR)


def test_transport_reject_makes_no_call(fake_gateway: FakeGateway) -> None:
    calls = []

    def counting(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200)

    d = make_directive(
        Action("throttle", rate_per_s=0.5, burst=1.0), Scope(endpoint="POST api.test/v1/chat")
    )
    fake_gateway.table.apply(d, now_ms())
    with httpx.Client(transport=FlyballTransport(fake_gateway, httpx.MockTransport(counting))) as c:
        assert c.post("http://api.test/v1/chat").status_code == 200
        r = c.post("http://api.test/v1/chat")
    assert r.status_code == 429 and r.headers["x-flyball-decision"] == "reject"
    assert int(r.headers["x-flyball-retry-after-ms"]) > 1_000 and r.headers["retry-after"] == "2"
    assert len(calls) == 1
    assert [e.status for e in fake_gateway.events] == [STATUS_OK, STATUS_REJECTED]


def test_async_transport_reroutes(fake_gateway: FakeGateway) -> None:
    d = make_directive(
        Action("reroute", target="http://backup.test:8080"), Scope(endpoint="GET api.test/x")
    )
    fake_gateway.table.apply(d, now_ms())

    async def go() -> httpx.Response:
        transport = AsyncFlyballTransport(fake_gateway, httpx.MockTransport(handler))
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.get("http://api.test/x")

    r = asyncio.run(go())
    assert r.json() == {"host": "backup.test", "hdr": "backup.test:8080"}
    assert fake_gateway.events[0].applied == APPLIED_CODES["reroute"]


def test_reroute_url_forms() -> None:
    url = httpx.URL("https://api.test/v1/chat?x=1")
    assert str(reroute_url(url, "http://b:81")) == "http://b:81/v1/chat?x=1"
    assert str(reroute_url(url, "eu.api.test")) == "https://eu.api.test/v1/chat?x=1"


def test_async_gateway_admit_wait_sleeps_out_a_defer() -> None:
    from flyball.settings import load_settings
    from gateway.client import AsyncGateway

    async def go() -> tuple[str, float, int]:
        gw = await AsyncGateway(
            load_settings(kafka_bootstrap="127.0.0.1:9"), "gw-async", control=False,
            fail_mode="expire",
        ).start()
        try:
            gw.apply_directive(make_directive(Action("defer", hold_ms=80), Scope(endpoint="GET /")))
            t0 = time.perf_counter()
            d = await gw.admit_wait("GET /")
            waited = time.perf_counter() - t0
            gw.emit({"endpoint": "GET /", "status": "ok"})
            return d.kind, waited, gw.stats().deferred
        finally:
            await gw.close(timeout_s=0.2)  # nothing listens: don't wait the default 5 s

    kind, waited, deferred = asyncio.run(go())
    assert kind == "defer" and waited >= 0.08 and deferred == 1


def test_gateway_silence_and_fail_mode_come_from_settings() -> None:
    from flyball.settings import load_settings
    from gateway.client import Gateway

    settings = load_settings(
        kafka_bootstrap="127.0.0.1:9", gateway_silence_ms=1234, gateway_fail_mode="expire"
    )
    from_settings = Gateway(settings, "gw-s", control=False)
    overridden = Gateway(settings, "gw-t", control=False, fail_mode="open")
    try:
        assert from_settings.fail_mode == "expire"
        assert overridden.fail_mode == "open"  # an explicit argument wins
    finally:
        from_settings.close()
        overridden.close()
