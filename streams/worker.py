"""``flyball worker`` / ``python -m streams.worker``: run one stream worker until stopped.

Settings come from ``FLYBALL_*`` (``flyball --help``). ``FLYBALL_WORKER_SINK=0`` (or
``flyball worker --no-sink``) leaves history to another process (``flyball up`` runs its own
sink and owns chDB); otherwise the worker writes history itself through ``infra.history``.
"""

from __future__ import annotations

import logging
import os
import sys

import faust

from flyball.errors import ConfigError, FlyballError
from flyball.settings import Settings, load_settings
from streams.shell import StreamWorker, WorkerConfig, make_worker_app

log = logging.getLogger(__name__)

SINK_ENV = "FLYBALL_WORKER_SINK"


def sink_from_env(default: bool = True) -> bool:
    raw = os.environ.get(SINK_ENV)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() not in ("0", "false", "no", "off")


def prepare(settings: Settings, sink: bool, config: WorkerConfig | None = None) -> StreamWorker:
    """Topics created, history schema applied, the worker app built (not yet running)."""
    from infra.topics import ensure_topics

    bootstrap = settings.kafka_bootstrap
    if bootstrap is None:
        raise ConfigError(
            "the worker needs FLYBALL_KAFKA_BOOTSTRAP (use `flyball up` for the embedded stack)"
        )
    ensure_topics(settings, bootstrap)
    store = None
    if sink:
        from infra.history import HistoryStore

        store = HistoryStore(settings)
        store.apply_ddl()
    return make_worker_app(settings, bootstrap, store, config)


def run(sw: StreamWorker, log_level: str = "INFO") -> int:
    """Run the Faust worker in this thread until SIGINT/SIGTERM; return the exit code."""
    worker = faust.Worker(sw.app, loglevel=log_level, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        if sw.trace is not None:
            sw.trace.close()
        if sw.sink is not None:
            sw.sink.close()
            close = getattr(sw.sink.store, "close", None)
            if close is not None:
                close()
    return 0


def run_worker(settings: Settings, sink: bool) -> int:
    """Run one stream worker against ``settings.kafka_bootstrap`` until stopped."""
    return run(prepare(settings, sink), settings.log_level)


def main() -> int:
    try:
        settings = load_settings()
        return run_worker(settings, sink=sink_from_env())
    except FlyballError as exc:
        print(f"flyball worker: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
