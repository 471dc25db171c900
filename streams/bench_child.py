"""Child processes of ``flyball bench``: each runs one Faust worker until it has seen ``N`` events,
prints one JSON line (``{"events": …, "seconds": …}``) and exits. Faust owns its process (event
loop, signals), so each measured worker gets a fresh one.

``python -m streams.bench_child pipeline N`` — the real stream worker (settings from env).
``python -m streams.bench_child naive N TOPIC`` — the naive per-event agent.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import time

from flyball.settings import load_settings
from streams.shell import StreamWorker, WorkerConfig
from streams.worker import prepare, run, sink_from_env


def _done(payload: dict[str, float | int]) -> None:
    print("BENCH " + json.dumps(payload), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)  # Faust's worker stops gracefully on SIGTERM


def run_pipeline(n_events: int) -> int:
    settings = load_settings()
    sw = prepare(settings, sink=sink_from_env(default=False), config=WorkerConfig())
    reported = False

    def on_checkpoint(w: StreamWorker) -> None:
        nonlocal reported
        st = w.stats
        if not reported and st.events + st.rejected_rows >= n_events:
            reported = True
            _done(
                {
                    "events": st.events,
                    "seconds": st.last_checkpoint_mono - st.first_batch_mono,
                    "features": st.features,
                    "scores": st.scores,
                    "directives": st.directives,
                    "batches": st.batches,
                }
            )

    sw.on_checkpoint = on_checkpoint
    return run(sw, "WARNING")


def run_naive(n_events: int, topic: str) -> int:
    from streams.naive import build_naive_app

    settings = load_settings()
    assert settings.kafka_bootstrap is not None
    reported = False

    def on_event(n: int, t0: float) -> None:
        nonlocal reported
        if not reported and n >= n_events:
            reported = True
            _done({"events": n, "seconds": time.monotonic() - t0})

    with tempfile.TemporaryDirectory(prefix="flyball-naive-") as tmp:
        app = build_naive_app(
            f"flyball-naive-{topic}", settings.kafka_bootstrap, topic, tmp, on_event
        )
        import faust

        with contextlib.suppress(SystemExit):
            faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
    return 0


def main(argv: list[str]) -> int:
    which, n = argv[0], int(argv[1])
    if which == "pipeline":
        return run_pipeline(n)
    return run_naive(n, argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
