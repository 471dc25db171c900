"""``flyball bench pipeline``: the stream worker's throughput against its floor and a naive agent.

One run, one embedded broker, the same synthetic events (a realistic mix over 20 endpoints, SDK
frames of 500 events; by default 1M events over 60 s of event time, i.e. a fleet at ~17k
attempts/s — the core's cost grows with event-time span x keys (bucket closes and feature
records) as well as with events, so sparser traffic is slower per event:
``FLYBALL_BENCH_SPAN_MS``):

- ``raw_events_per_s``: a plain confluent-kafka consumer decoding the frames into numpy columns
  (``decode_message`` + concat per partition), no features: the floor any worker pays. The
  median of three reads of the whole topic (``raw_runs``): one read varies by about ±20 %.
- ``pipeline_events_per_s``: the real worker (``streams.shell.StreamWorker`` over
  ``detectors.governor``) end to end: Faust consume, decode, governor ingest/advance, features,
  scores and directives published, producer flushed, offsets acked. History sink **off** (as under
  ``flyball up``, whose own sink process writes history); ``pipeline_sink_events_per_s`` repeats
  it on a subset with the worker's own history sink on (chDB in a temp dir).
- ``naive_faust_events_per_s``: a per-event Faust agent (``streams.naive``) on single-event JSON
  messages (the same events exploded), ``group_by(endpoint)`` + a tumbling table; on a subset.

Worker timings run from the first batch consumed to the checkpoint after the last event, so group
joins are not counted; the raw consumer's from its first message to its last.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition

from flyball.settings import Settings
from infra.broker import EmbeddedBroker
from infra.topics import ensure_topics
from schemas.columns import EventColumns
from schemas.frames import decode_message, encode_event
from streams.synthetic import frames_in_time_order, steady_traffic

PIPELINE_EVENTS = int(os.environ.get("FLYBALL_BENCH_EVENTS", "1000000"))
SINK_EVENTS = int(os.environ.get("FLYBALL_BENCH_SINK_EVENTS", "300000"))
NAIVE_EVENTS = int(os.environ.get("FLYBALL_BENCH_NAIVE_EVENTS", "30000"))
SPAN_MS = int(os.environ.get("FLYBALL_BENCH_SPAN_MS", "60000"))
EVENTS_PER_FRAME = 500
RAW_RUNS = 3


def topic_env(prefix: str) -> dict[str, str]:
    return {
        "FLYBALL_TOPIC_EVENTS": f"{prefix}.events",
        "FLYBALL_TOPIC_FEATURES": f"{prefix}.features",
        "FLYBALL_TOPIC_SCORES": f"{prefix}.scores",
        "FLYBALL_TOPIC_CONTROL": f"{prefix}.control",
        "FLYBALL_TOPIC_DEADLETTER": f"{prefix}.deadletter",
    }


def child_env(bootstrap: str, prefix: str, data_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    root = str(Path(__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYBALL_")}
    env.update(topic_env(prefix))
    env.update(
        {
            "FLYBALL_KAFKA_BOOTSTRAP": bootstrap,
            "FLYBALL_DATA_DIR": str(data_dir),
            "FLYBALL_LOG_LEVEL": "WARNING",
            # the worker signs what it publishes, as in production: a key of its own
            "FLYBALL_SIGNING_KEY": secrets.token_hex(16),
            "PYTHONPATH": root + os.pathsep + env.get("PYTHONPATH", ""),
            **extra,
        }
    )
    return env


def produce(conf: dict[str, str], topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(
        {**conf, "linger.ms": 20, "batch.size": 1_000_000, "message.max.bytes": 10_000_000}
    )
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:  # queue full: wait for deliveries, then retry this message
                producer.poll(0.1)
    if producer.flush(60) != 0:
        raise RuntimeError(f"could not deliver every message to {topic}")


def measure_raw(conf: dict[str, str], topic: str, partitions: int, n_events: int) -> float:
    """events/s of a plain consumer decoding frames into numpy columns (per-partition concat)."""
    consumer = Consumer(
        {
            **conf,
            "group.id": f"bench-raw-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 8_388_608,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen = 0
    t0 = 0.0
    deadline = time.monotonic() + 300
    try:
        while seen < n_events and time.monotonic() < deadline:
            msgs = consumer.consume(64, timeout=1.0)
            if msgs and t0 == 0.0:
                t0 = time.monotonic()
            parts: dict[int, list[EventColumns]] = {}
            for m in msgs:
                if m.error() is None:
                    ev = decode_message(m.value() or b"").events
                    parts.setdefault(m.partition() or 0, []).append(ev)
                    seen += len(ev)
            for batches in parts.values():
                EventColumns.concat(batches)
        elapsed = time.monotonic() - t0
    finally:
        consumer.close()
    if seen < n_events:
        raise RuntimeError(f"raw consumer saw {seen} of {n_events} events")
    return seen / elapsed


def run_child(args: list[str], env: dict[str, str], timeout_s: float) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "streams.bench_child", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    for line in (proc.stdout + "\n" + proc.stderr).splitlines():
        at = line.find("BENCH {")  # Faust's worker logs stdout, so it may carry a log prefix
        if at >= 0:
            result: dict[str, Any] = json.loads(line[at + 6 :].strip())
            return result
    raise RuntimeError(
        f"bench child {args[0]} failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}"
    )


def pipeline_bench(settings: Settings) -> dict[str, Any]:
    now_ms = time.time_ns() // 1_000_000
    duration_ms = SPAN_MS  # event time covered by the events, ending now
    events = steady_traffic(PIPELINE_EVENTS, now_ms - duration_ms, duration_ms, seed=1)
    frames = frames_in_time_order(events, EVENTS_PER_FRAME)
    naive_msgs = [
        (ep.encode(), encode_event({"endpoint": ep, "ts_ms": int(ts), "status": int(st),
                                    "event_id": eid, "tenant": tn, "attempt": int(at)}))
        for ep, ts, st, eid, tn, at in zip(
            events.endpoint[:NAIVE_EVENTS], events.ts_ms[:NAIVE_EVENTS],
            events.status[:NAIVE_EVENTS], events.event_id[:NAIVE_EVENTS],
            events.tenant[:NAIVE_EVENTS], events.attempt[:NAIVE_EVENTS], strict=True,
        )
    ]  # fmt: skip
    run_id = uuid.uuid4().hex[:8]
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory(prefix="flyball-bench-") as tmp:
        conf = settings.kafka_client_config(broker.bootstrap)
        prefixes = {"pipe": f"bench-{run_id}", "sink": f"bench-{run_id}-sink"}
        for prefix in prefixes.values():
            ensure_topics(settings.with_topic_prefix(prefix), broker.bootstrap)
        naive_topic = f"bench-{run_id}-naive.events"
        ensure_topics(settings.model_copy(update={"topic_events": naive_topic}), broker.bootstrap)
        produce(conf, f"{prefixes['pipe']}.events", frames)
        sink_frames = frames_in_time_order(
            events.take(np.arange(min(SINK_EVENTS, len(events)))), EVENTS_PER_FRAME
        )
        produce(conf, f"{prefixes['sink']}.events", sink_frames)
        produce(conf, naive_topic, naive_msgs)

        # the floor is the median of three reads (one read varies by +-20 % from run to run)
        raw = statistics.median(
            measure_raw(conf, f"{prefixes['pipe']}.events", settings.topic_events_partitions,
                        PIPELINE_EVENTS)
            for _ in range(RAW_RUNS)
        )  # fmt: skip
        base = Path(tmp)
        pipe = run_child(
            ["pipeline", str(PIPELINE_EVENTS)],
            child_env(broker.bootstrap, prefixes["pipe"], base / "pipe",
                      {"FLYBALL_WORKER_SINK": "0"}),
            timeout_s=600,
        )  # fmt: skip
        sink = run_child(
            ["pipeline", str(SINK_EVENTS)],
            child_env(broker.bootstrap, prefixes["sink"], base / "sink",
                      {"FLYBALL_WORKER_SINK": "1",
                       "FLYBALL_CLICKHOUSE_DSN": f"chdb://{base / 'sink' / 'history'}"}),
            timeout_s=600,
        )  # fmt: skip
        naive = run_child(
            ["naive", str(NAIVE_EVENTS), naive_topic],
            child_env(broker.bootstrap, f"bench-{run_id}-naive", base / "naive", {}),
            timeout_s=600,
        )
    pipeline_eps = pipe["events"] / pipe["seconds"]
    naive_eps = naive["events"] / naive["seconds"]
    return {
        "events": PIPELINE_EVENTS,
        "events_per_frame": EVENTS_PER_FRAME,
        "event_time_span_ms": SPAN_MS,
        "pipeline_events_per_s": round(pipeline_eps),
        "pipeline_history_sink": False,
        "pipeline_sink_events_per_s": round(sink["events"] / sink["seconds"]),
        "pipeline_sink_events": SINK_EVENTS,
        "raw_events_per_s": round(raw),
        "raw_runs": RAW_RUNS,
        "naive_faust_events_per_s": round(naive_eps),
        "naive_faust_events": NAIVE_EVENTS,
        "naive_faust_input": "single-event JSON messages (same events, exploded)",
        "ratio_to_raw": round(pipeline_eps / raw, 3),
        "speedup_vs_naive": round(pipeline_eps / naive_eps, 1),
        "outputs": {k: pipe[k] for k in ("features", "scores", "directives")},
        "targets": {"ratio_to_raw": 0.35, "speedup_vs_naive": 20},
    }


def run_pipeline_bench(settings: Settings, as_json: bool) -> int:
    result = pipeline_bench(settings)
    if as_json:
        print(json.dumps(result))
    else:
        print("flyball bench pipeline (events/s; one run, one machine)")
        print(json.dumps(result, indent=2))
    ok = result["ratio_to_raw"] >= 0.35 and result["speedup_vs_naive"] >= 20
    return 0 if ok else 1
