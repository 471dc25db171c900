"""``flyball bench loop``: onset-to-directive latency through the whole loop.

The embedded broker, the real stream worker (``python -m streams.worker``, history off) and a
gateway using the SDK (``gateway.client.Gateway``: frames out, control listener in). Steady
traffic flows throughout; then, repeatedly, a synchronized retry storm starts on one endpoint
(every ``period_ms`` the same requests fail and are retried in phase). The latency of one onset is
the wall time from the first storm event's emit until the gateway holds a ``retry_storm``
directive for that endpoint (read from its directive table, i.e. after the control listener
applied it). The storm then stops; the next onset waits until the directive is gone (released or
expired) and traffic was calm for ``calm_s``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from flyball.settings import Settings
from gateway.client import Gateway
from infra.broker import EmbeddedBroker
from infra.topics import ensure_topics
from streams.bench import child_env
from streams.synthetic import ENDPOINTS, TENANTS

STORM_ENDPOINT = "POST /v1/chat"
ONSETS = int(os.environ.get("FLYBALL_BENCH_ONSETS", "10"))


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def steady(gw: Gateway, stop: threading.Event, rate_per_s: int = 1_500, seed: int = 2) -> None:
    """Organic traffic on every endpoint at ~``rate_per_s`` attempts per second."""
    rng = random.Random(seed)
    tick_s = 0.05
    n = 0
    while not stop.is_set():
        now = wall_ms()
        for _ in range(int(rate_per_s * tick_s)):
            n += 1
            gw.emit(
                {
                    "ts_ms": now,
                    "latency_ms": int(rng.lognormvariate(4.5, 0.4)),
                    "endpoint": ENDPOINTS[rng.randrange(len(ENDPOINTS))],
                    "tenant": TENANTS[rng.randrange(len(TENANTS))],
                    "agent_id": f"agent-{rng.randrange(200)}",
                    "status": "ok" if rng.random() > 0.02 else "error",
                    "attempt": 1 if rng.random() < 0.03 else 0,
                    "request_id": f"steady-{n}",
                    "root_id": f"steady-{n}",
                    "priority": rng.randrange(10),
                }
            )
        time.sleep(tick_s)


def storm_directive(gw: Gateway) -> Any:
    for d in gw.directives():
        if d.reason.detector == "retry_storm" and d.scope.endpoint == STORM_ENDPOINT:
            return d
    return None


def one_onset(gw: Gateway, k: int, requests: int = 300, period_ms: int = 200) -> float | None:
    """Run a storm until the directive arrives (or 10 s); return the latency in ms."""
    onset_ms = 0
    wave = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = wall_ms()
        if onset_ms == 0:
            onset_ms = now
        for r in range(requests):
            gw.emit(
                {
                    "ts_ms": now,
                    "latency_ms": 20,
                    "endpoint": STORM_ENDPOINT,
                    "tenant": TENANTS[0],
                    "agent_id": f"agent-{r % 50}",
                    "status": "error",
                    "attempt": min(wave, 5),
                    "request_id": f"storm-{k}-{r}",
                    "root_id": f"storm-{k}-{r}",
                    "priority": 3,
                }
            )
        wave += 1
        next_wave = time.monotonic() + period_ms / 1000
        while time.monotonic() < next_wave:
            if storm_directive(gw) is not None:
                return float(wall_ms() - onset_ms)
            time.sleep(0.002)
    return None


def loop_bench(settings: Settings, calm_s: float = 4.0) -> dict[str, Any]:
    prefix = f"loop-{uuid.uuid4().hex[:8]}"
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory(prefix="flyball-loop-") as tmp:
        s = settings.model_copy(
            update={
                "kafka_bootstrap": broker.bootstrap,
                "topic_events": f"{prefix}.events",
                "topic_features": f"{prefix}.features",
                "topic_scores": f"{prefix}.scores",
                "topic_control": f"{prefix}.control",
                "topic_deadletter": f"{prefix}.deadletter",
                "signing_key": None,
            }
        )
        ensure_topics(s, broker.bootstrap)
        env = child_env(broker.bootstrap, prefix, Path(tmp), {"FLYBALL_WORKER_SINK": "0"})
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(Path(tmp) / "worker.log", "wb"),  # noqa: SIM115
        )
        gw = Gateway(s, gateway_id="loop-gw", bootstrap=broker.bootstrap, linger_ms=20)
        stop = threading.Event()
        traffic = threading.Thread(target=steady, args=(gw, stop), daemon=True)
        latencies: list[float] = []
        misses = 0
        try:
            gw.start()
            traffic.start()
            deadline = time.monotonic() + 60
            while gw.governor_state != "ok" and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(15)  # baselines learn normal traffic
            for k in range(ONSETS):
                ms = one_onset(gw, k)
                if ms is None:
                    misses += 1
                else:
                    latencies.append(ms)
                quiet_deadline = time.monotonic() + 15
                while storm_directive(gw) is not None and time.monotonic() < quiet_deadline:
                    time.sleep(0.05)
                time.sleep(calm_s)
        finally:
            stop.set()
            traffic.join(timeout=5)
            gw.close()
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    arr = np.array(latencies) if latencies else np.array([np.nan])
    return {
        "onsets": ONSETS,
        "detected": len(latencies),
        "missed": misses,
        "onset_to_directive_ms_p50": round(float(np.percentile(arr, 50)), 1),
        "onset_to_directive_ms_p95": round(float(np.percentile(arr, 95)), 1),
        "onset_to_directive_ms": [round(x, 1) for x in latencies],
        "gateway": "gateway.client.Gateway (SDK: frames out, control listener in)",
        "target": {"onset_to_directive_ms_p95": 1000},
    }


def run_loop_bench(settings: Settings, as_json: bool) -> int:
    result = loop_bench(settings)
    if not as_json:
        print("flyball bench loop (onset of a retry storm -> directive at the gateway)")
    print(json.dumps(result, indent=None if as_json else 2))
    p95 = result["onset_to_directive_ms_p95"]
    return 0 if result["missed"] == 0 and p95 <= 1000 else 1
