"""Unit tests of the shell's pieces that need no broker: fetch wait, control key, sink flush."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from flyball.errors import ConfigError, FlyballError
from flyball.settings import load_settings
from schemas.columns import EventColumns
from schemas.directive import Action, Directive, Reason, Scope
from schemas.records import FeatureRecord
from streams.app import (
    FETCH_WAIT_ENV,
    AppTuning,
    FlyballConsumerThread,
    FlyballTransport,
    build_app,
    fetch_wait_from_env,
)
from streams.outputs import Outputs, directive_key, encode_directives
from streams.sink import HistorySink, SinkConfig


def test_fetch_wait_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FETCH_WAIT_ENV, raising=False)
    assert fetch_wait_from_env() == 20
    monkeypatch.setenv(FETCH_WAIT_ENV, "5")
    assert fetch_wait_from_env() == 5
    assert AppTuning().fetch_wait_ms == 5
    monkeypatch.setenv(FETCH_WAIT_ENV, "soon")
    with pytest.raises(ConfigError):
        fetch_wait_from_env()
    monkeypatch.setenv(FETCH_WAIT_ENV, "-1")
    with pytest.raises(ConfigError):
        fetch_wait_from_env()


def test_worker_consumer_gets_the_short_fetch_wait(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, kafka_bootstrap="127.0.0.1:9")

    async def create() -> int:
        app = build_app(settings, "127.0.0.1:9", AppTuning(fetch_wait_ms=15))
        assert isinstance(app.transport, FlyballTransport)
        thread = app.consumer._thread  # type: ignore[attr-defined]
        assert isinstance(thread, FlyballConsumerThread)
        consumer = thread._create_worker_consumer(app.transport)  # not started: no connection
        return int(consumer._fetch_max_wait_ms)

    assert asyncio.run(create()) == 15


def _directive(id_: str, action: Action) -> Directive:
    return Directive(
        id=id_,
        issued_ms=1_000,
        expires_ms=31_000,
        scope=Scope(endpoint="POST /v1/chat", min_attempt=1),
        action=action,
        reason=Reason("retry_storm", 0.9, {}),
    )


def test_control_key_is_scope_and_episode() -> None:
    defer = _directive("storm-a", Action("defer", hold_ms=200, jitter_ms=300))
    shed = _directive("storm-b", Action("shed", fraction=0.5, retry_after_ms=1_000))
    release = _directive("storm-a", Action("release"))
    assert directive_key(defer) == "endpoint=POST /v1/chat|min_attempt=1|id=storm-a"
    out = Outputs()
    out.add(SimpleNamespace(features=[], scores=[], directives=[defer, shed, release]), None)
    pairs = encode_directives(out)
    keys = [k for k, _ in pairs]
    assert keys[0] != keys[1]  # two episodes on one scope do not overwrite each other
    assert keys[0] == keys[2]  # an episode's release replaces its directive under compaction
    # and a tombstone after the release: compaction then forgets the episode altogether
    assert pairs[3] == (keys[2], None) and len(pairs) == 4
    assert all(v is not None for _, v in pairs[:3])


def _events(n: int) -> EventColumns:
    return EventColumns.from_arrays({"ts_ms": np.arange(n, dtype=np.int64)}, n)


class SlowStore:
    def __init__(self, fail_first: bool = False) -> None:
        self.events = 0
        self.features = 0
        self.fail_first = fail_first

    def insert_events(self, events: EventColumns) -> int:
        if self.fail_first:
            self.fail_first = False
            raise FlyballError("transient")
        self.events += len(events)
        return len(events)

    def insert_features(self, records: list[FeatureRecord]) -> int:
        self.features += len(records)
        return len(records)

    def insert_scores(self, records: list[object]) -> int:
        return len(records)

    def insert_directives(self, directives: list[Directive]) -> int:
        return len(directives)


def test_sink_flush_takes_a_snapshot_and_keeps_later_rows() -> None:
    async def run() -> tuple[int, int, int, int]:
        store = SlowStore(fail_first=True)
        sink = HistorySink(store, SinkConfig(backoff_min_ms=50))  # type: ignore[arg-type]
        sink.add(_events(3), [], [], [])
        flush = asyncio.create_task(sink.flush())
        await asyncio.sleep(0)  # the flush detached the 3 rows and is backing off
        sink.add(_events(2), [], [], [])  # added during the flush: for the next one
        written = await flush
        pending = sink.pending_rows
        second = await sink.flush()
        sink.close()
        return written, pending, second, store.events

    assert asyncio.run(run()) == (3, 2, 2, 5)


def test_sink_flush_cancelled_puts_rows_back() -> None:
    async def run() -> int:
        store = SlowStore(fail_first=True)
        sink = HistorySink(store, SinkConfig(backoff_min_ms=10_000))  # type: ignore[arg-type]
        sink.add(_events(3), [], [], [])
        flush = asyncio.create_task(sink.flush())
        await asyncio.sleep(0.2)  # failed once, now sleeping in its backoff
        sink.add(_events(1), [], [], [])
        flush.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flush
        pending = sink.pending_rows
        sink.close()
        return pending

    assert asyncio.run(run()) == 4


def test_a_worker_without_control_keys_refuses_to_start(tmp_path: Path) -> None:
    """Signed by default: a worker publishes only directives gateways can verify, unless
    unsigned ones are explicitly allowed."""
    from streams.governors import Timing
    from streams.shell import StreamWorker

    base = load_settings(data_dir=tmp_path, kafka_bootstrap="127.0.0.1:9")
    with pytest.raises(ConfigError, match="no control keys"):
        StreamWorker(base, "127.0.0.1:9", lambda: None, Timing(1_000, 5_000))  # type: ignore[arg-type,return-value]
    public_only = tmp_path / "pub.json"
    from schemas.signing import Keyring, generate_key, write_keyring

    write_keyring(public_only, Keyring((generate_key("k1"),), "k1"), public_only=True)
    with pytest.raises(ConfigError, match="no signing key"):
        StreamWorker(base.model_copy(update={"control_keys": public_only}), "127.0.0.1:9",
                     lambda: None, Timing(1_000, 5_000))  # type: ignore[arg-type,return-value]


def test_a_log_reset_under_the_worker_is_told_from_a_redelivery() -> None:
    """Hardening #8: a broker that restarted with an empty log numbers messages from 0 again;
    the worker would skip them all as already ingested. A redelivery (offset below the next one,
    log still longer) is not a reset."""
    from streams.governors import WorkerGovernor

    class Core:
        def expect(self, source: int) -> None: ...

    gov = WorkerGovernor(Core(), {0: 500, 1: 800}, 0.0)  # type: ignore[arg-type]
    high = {0: 3, 1: 900}
    assert gov.reset_partitions({0: 0, 1: 790}, high.get) == [0]  # 1: a redelivery
    assert gov.reset_partitions({0: 500, 1: 800}, high.get) == []  # live, in order
    assert gov.reset_partitions({0: 0}, lambda p: None) == []  # high watermark unknown: no guess
    assert gov.reset_partitions({7: 0}, high.get) == []  # a partition it was not built for
