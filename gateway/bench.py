"""Gateway hot-path benchmark: ``python -m gateway.bench`` prints the numbers as JSON.

- ``admit_ns_p50`` / ``admit_ns_p99``: one ``Gateway.admit`` call with 10 directives in force
  (mixed scopes: endpoint, tenant, agent, priority/attempt/depth filters, wildcard) and a request
  mix that walks them. Timed per call with ``perf_counter_ns`` (timer overhead, ~50–100 ns on this
  machine, is included, not subtracted).
- ``emit_ns_p50`` (and ``emit_event_ns_p50``): one ``emit`` of a dict event (copied, ``ts_ms``
  filled) and of a ``RequestEvent``. Honest caveat: the producer points at an unreachable address
  (nothing listens on port 9), so no broker I/O happens; emit only ever appends to a bounded buffer
  anyway, and the background shipper does its real work (framing, encoding, handing frames to
  librdkafka, dropping the oldest at the bound) concurrently, competing for the GIL as it would
  live.
- ``middleware_overhead_ratio``: median loopback request latency through ``FlyballMiddleware`` ÷
  without it, on the same uvicorn server (two paths of one app) in the same run, requests
  interleaved over one keep-alive httpx client.

Targets: admit p50 ≤ 2000 ns, emit p50 ≤ 2000 ns, ratio ≤ 1.10.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from flyball.settings import load_settings
from gateway.asgi import ASGIApp, FlyballMiddleware, Receive, Scope, Send
from gateway.client import Gateway
from gateway.events import RequestEvent
from schemas.directive import Action, Directive, Reason
from schemas.directive import Scope as DScope

UNREACHABLE = "127.0.0.1:9"
_ENDPOINTS = ("POST /v1/chat", "POST /v1/embed", "GET /v1/models", "POST /v1/tools", "GET /health")


def _directives(now_ms: int) -> list[Directive]:
    big = Action("throttle", rate_per_s=1e9, burst=1e9)  # in force, but admits (walks the bucket)
    specs: list[tuple[DScope, Action]] = [
        (DScope(endpoint="POST /v1/chat", tenant="t3"), big),
        (DScope(endpoint="POST /v1/chat", agent_id="a7"), Action("defer", hold_ms=5, jitter_ms=50)),
        (DScope(endpoint="POST /v1/chat", min_priority=8), Action("shed", fraction=0.5)),
        (DScope(endpoint="POST /v1/chat", min_attempt=3), Action("defer", hold_ms=100)),
        (DScope(endpoint="POST /v1/embed"), big),
        (DScope(endpoint="POST /v1/embed", tenant="t1", min_depth=2), Action("shed", fraction=0.2)),
        (DScope(endpoint="GET /v1/models", tenant="t2"), big),
        (DScope(endpoint="POST /v1/tools", agent_id="a1"), Action("reroute", target="eu-2")),
        (DScope(endpoint="POST /v1/tools"), Action("defer", hold_ms=20, jitter_ms=200)),
        (DScope(tenant="t9"), Action("shed", fraction=1.0, retry_after_ms=1000)),
    ]
    return [
        Directive(f"bench-{i}", now_ms, now_ms + 3_600_000, s, a, Reason("bench", 1.0))
        for i, (s, a) in enumerate(specs)
    ]


def _bench_gateway(gateway_id: str) -> Gateway:
    return Gateway(
        load_settings(kafka_bootstrap=UNREACHABLE),
        gateway_id,
        control=False,
        fail_mode="expire",  # no governor here; keep enforcing the bench's directives
        rng=random.Random(1),
    )


def _pct(samples: list[int], q: float) -> float:
    samples.sort()
    return float(samples[min(len(samples) - 1, int(q * len(samples)))])


def bench_admit(gw: Gateway, n: int = 200_000) -> tuple[float, float]:
    rng = random.Random(2)
    reqs = [
        (
            rng.choice(_ENDPOINTS),
            f"t{rng.randrange(10)}",
            f"a{rng.randrange(10)}",
            rng.randrange(10),
            rng.choice((0, 0, 0, 1, 2, 3)),
            rng.choice((0, 0, 1, 2)),
        )
        for _ in range(4096)
    ]
    admit, clock = gw.admit, time.perf_counter_ns
    samples = [0] * n
    for i in range(n):
        ep, tenant, agent, prio, attempt, depth = reqs[i & 4095]
        t0 = clock()
        admit(ep, tenant, agent, prio, attempt, depth)
        samples[i] = clock() - t0
    return _pct(samples, 0.50), _pct(samples, 0.99)


def bench_emit(gw: Gateway, n: int = 100_000) -> tuple[float, float]:
    emit, clock = gw.emit, time.perf_counter_ns
    dict_samples = [0] * n
    event = {"endpoint": "POST /v1/chat", "tenant": "t1", "agent_id": "a1", "status": 0,
             "latency_ms": 12, "attempt": 0, "priority": 3}
    for i in range(n):
        t0 = clock()
        emit(event)
        dict_samples[i] = clock() - t0
    obj_samples = [0] * n
    now = int(time.time() * 1000)
    for i in range(n):
        ev = RequestEvent("POST /v1/chat", now, 0, 12, "t1", "a1")
        t0 = clock()
        emit(ev)
        obj_samples[i] = clock() - t0
    return _pct(dict_samples, 0.5), _pct(obj_samples, 0.5)


async def _ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _router(plain: ASGIApp, governed: ASGIApp) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        target = governed if scope.get("path", "").startswith("/mw") else plain
        await target(scope, receive, send)

    return app


def bench_middleware(gw: Gateway, n: int = 2_000) -> float:
    import httpx
    import uvicorn

    from infra.broker import free_port

    app = _router(_ok_app, FlyballMiddleware(_ok_app, gw))
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bench-uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            raise RuntimeError("uvicorn did not start")
        headers = {"x-flyball-tenant": "t1", "x-flyball-agent": "a1", "x-flyball-priority": "3"}
        plain: list[int] = []
        governed: list[int] = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
            get: Callable[[str], Any] = client.get
            for _ in range(min(200, n)):  # warm-up
                get("/plain")
                get("/mw")
            clock = time.perf_counter_ns
            for i in range(n):
                for path, out in (("/plain", plain), ("/mw", governed)) if i % 2 else (
                    ("/mw", governed), ("/plain", plain)
                ):
                    t0 = clock()
                    get(path).raise_for_status()
                    out.append(clock() - t0)
        return statistics.median(governed) / statistics.median(plain)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def run_gateway_bench(
    n_admit: int = 200_000, n_emit: int = 100_000, n_http: int = 2_000
) -> dict[str, float]:
    """Run the three benchmarks (sizes adjustable for a quick smoke run)."""
    gw = _bench_gateway("bench-gw")
    try:
        now_ms = int(time.time() * 1000)
        for d in _directives(now_ms):
            gw.apply_directive(d)
        admit_p50, admit_p99 = bench_admit(gw, n_admit)
        gw.start()  # the shipper thread runs during the emit and HTTP benchmarks
        emit_p50, emit_event_p50 = bench_emit(gw, n_emit)
        ratio = bench_middleware(gw, n_http)
        stats = gw.stats()
    finally:
        gw.close(timeout_s=0.1)
    return {
        "admit_ns_p50": admit_p50,
        "admit_ns_p99": admit_p99,
        "emit_ns_p50": emit_p50,
        "emit_event_ns_p50": emit_event_p50,
        "middleware_overhead_ratio": ratio,
        "directives_in_force": float(stats.directives_in_force),
    }


def main() -> None:
    import json

    print(json.dumps(run_gateway_bench(), indent=2))


if __name__ == "__main__":
    main()

