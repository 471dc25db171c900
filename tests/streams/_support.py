"""Helpers for the stream worker tests: a worker subprocess, topic reads, history queries.

The worker runs as ``python -m streams.worker`` (Faust wants its own process: event loop and
signals). chDB locks its directory to one process and hosts one path per process, so history is
read by a short-lived subprocess after the worker stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from flyball.settings import Settings
from streams.app import app_id

ROOT = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings, sink: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYBALL_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "FLYBALL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
            "FLYBALL_TOPIC_EVENTS": settings.topic_events,
            "FLYBALL_TOPIC_FEATURES": settings.topic_features,
            "FLYBALL_TOPIC_SCORES": settings.topic_scores,
            "FLYBALL_TOPIC_CONTROL": settings.topic_control,
            "FLYBALL_TOPIC_DEADLETTER": settings.topic_deadletter,
            "FLYBALL_CLICKHOUSE_DSN": settings.clickhouse_dsn or "",
            "FLYBALL_CLICKHOUSE_DATABASE": settings.clickhouse_database,
            "FLYBALL_DATA_DIR": str(settings.data_dir),
            "FLYBALL_WORKER_SINK": "1" if sink else "0",
            "FLYBALL_LOG_LEVEL": "INFO",
        }
    )
    if settings.signing_key is not None:
        env["FLYBALL_SIGNING_KEY"] = settings.signing_key.get_secret_value()
    return env


class WorkerProcess:
    """``python -m streams.worker`` as a child; ``stop()`` (SIGTERM) or ``kill()`` (SIGKILL)."""

    def __init__(self, settings: Settings, sink: bool, log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.worker"],
                env=settings_env(settings, sink),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    def stop(self, timeout_s: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]


def produce(settings: Settings, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    p = Producer({**settings.kafka_client_config(), "linger.ms": 5})
    for key, value in messages:
        p.produce(topic, key=key, value=value)
    assert p.flush(30) == 0


def committed_total(settings: Settings) -> int:
    """Sum of the worker group's committed offsets on the events topic."""
    c = Consumer({**settings.kafka_client_config(), "group.id": app_id(settings)})
    try:
        tps = [
            TopicPartition(settings.topic_events, p)
            for p in range(settings.topic_events_partitions)
        ]
        return sum(max(tp.offset, 0) for tp in c.committed(tps, timeout=10))
    finally:
        c.close()


def read_topic(
    settings: Settings, topic: str, timeout_s: float = 20
) -> list[tuple[bytes, bytes | None]]:
    """Every message of ``topic`` from offset 0 to the end of each partition (no group join)."""
    c = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": "reader",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    out: list[tuple[bytes, bytes | None]] = []
    try:
        n = len(c.list_topics(topic, timeout=10).topics[topic].partitions)
        c.assign([TopicPartition(topic, p, 0) for p in range(n)])
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < n and time.monotonic() < deadline:
            for m in c.consume(500, timeout=0.5):
                if m.error() is None:
                    out.append((m.key() or b"", m.value()))  # None: a tombstone
                else:
                    at_end.add(m.partition() or 0)
    finally:
        c.close()
    return out


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


_QUERY = """
import json, sys
from flyball.settings import load_settings
from infra.history import HistoryStore
store = HistoryStore(load_settings())
out = {}
for name, sql in json.loads(sys.argv[1]).items():
    out[name] = [list(r) for r in store.query(sql)[1]]
store.close()
print(json.dumps(out, default=str))
"""


def query_history(settings: Settings, queries: dict[str, str]) -> dict[str, list[list[Any]]]:
    """Run SQL against the worker's history in a fresh process ({db} = the database)."""
    sql = {k: v.replace("{db}", settings.clickhouse_database) for k, v in queries.items()}
    proc = subprocess.run(
        [sys.executable, "-c", _QUERY, json.dumps(sql)],
        env=settings_env(settings, sink=True),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, list[list[Any]]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
