"""Child processes that do not outlive their parent.

On Linux a child started from the main thread asks the kernel for SIGTERM when its parent dies
(``PR_SET_PDEATHSIG``), so even a ``kill -9`` of ``flyball up`` leaves no broker or worker behind.
The kernel ties that signal to the *thread* that forked the child, so it is only requested from
the main thread (a child forked by a short-lived thread would die with the thread).
"""

from __future__ import annotations

import ctypes
import signal
import sys
import threading
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(None, use_errno=True)  # loaded now: nothing to import after fork
    except OSError:  # pragma: no cover - no libc symbols in this process
        _libc = None


def _die_with_parent() -> None:
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def child_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` (None where it cannot or should not be used)."""
    if _libc is None or threading.current_thread() is not threading.main_thread():
        return None
    return _die_with_parent
