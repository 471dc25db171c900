"""A log-rate budget: a flood of bad input must not flood the log."""

from __future__ import annotations

import threading
import time


class LogBudget:
    """At most ``per_s`` log lines per second (``take()`` says whether one may be written);
    thread-safe."""

    def __init__(self, per_s: int) -> None:
        self.per_s = per_s
        self._window = 0
        self._used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        now = int(time.monotonic())
        with self._lock:
            if now != self._window:
                self._window, self._used = now, 0
            self._used += 1
            return self._used <= self.per_s
