"""``flyball up``: the embedded stack in the foreground until SIGINT or SIGTERM.

Prints exactly one line on stdout when everything is ready::

    flyball ready bootstrap=127.0.0.1:PORT history=chdb:///… query=http://127.0.0.1:PORT data_dir=…

Logs go to stderr.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from flyball.settings import Settings
from infra.stack import EmbeddedStack

log = logging.getLogger(__name__)


def run_up(
    settings: Settings, data_dir: Path | None = None, stop: threading.Event | None = None
) -> int:
    """Run until SIGINT/SIGTERM (or ``stop`` is set); 0 on a clean stop."""
    configure_logging(settings.log_level)
    stop = stop or threading.Event()
    restore = _install_signal_handlers(stop)
    try:
        with EmbeddedStack(settings, data_dir) as stack:
            if stop.is_set():
                return 0
            sys.stdout.write(stack.ready_line() + "\n")
            sys.stdout.flush()
            reported: set[str] = set()
            while not stop.wait(0.5):
                for problem in stack.problems():
                    if problem not in reported:
                        log.error("%s", problem)
                        reported.add(problem)
            log.info("stopping")
    finally:
        restore()
    return 0


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    # librdkafka is chatty about the broker going away during shutdown
    logging.getLogger("confluent_kafka").setLevel(logging.WARNING)


def _install_signal_handlers(stop: threading.Event) -> Any:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore
