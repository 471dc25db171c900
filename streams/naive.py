"""The naive baseline: a per-event Faust agent, as one would first write it.

Single-event JSON messages (``schemas.frames.encode_event``, what a non-SDK gateway sends),
``group_by(endpoint)`` through a repartition topic, and a tumbling 1 s table counting events per
endpoint (in-memory store). Used only by ``flyball bench pipeline`` for ``speedup_vs_naive``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import faust

from streams.app import broker_urls


def build_naive_app(
    app_id: str,
    bootstrap: str,
    source_topic: str,
    datadir: str,
    on_event: Callable[[int, float], None],
) -> faust.App:
    app = faust.App(
        app_id,
        broker=broker_urls(bootstrap),
        store="memory://",
        web_enabled=False,
        value_serializer="json",
        topic_partitions=4,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        datadir=datadir,
    )
    source = app.topic(source_topic, value_type=None, key_type=bytes, key_serializer="raw")
    counts = app.Table("endpoint_counts", default=int).tumbling(1.0, expires=60.0)
    state: dict[str, float] = {"n": 0, "t0": 0.0}

    @app.agent(source)
    async def count_per_endpoint(stream: Any) -> None:
        async for event in stream.group_by(lambda e: e["endpoint"], name="by_endpoint"):
            counts[event["endpoint"]] += 1
            if state["n"] == 0:
                state["t0"] = time.monotonic()
            state["n"] += 1
            on_event(int(state["n"]), state["t0"])

    return app
