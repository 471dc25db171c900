"""The embedded stack: everything ``flyball up`` runs, as a context manager.

Start order: broker (only when ``kafka_bootstrap`` is unset) → topics → history store + DDL →
stream worker child (``python -m streams.worker``, history off) → history sink → query endpoint →
``data_dir/up.json``. Stop order: worker → sink (flush, commit) → query endpoint → ``up.json`` →
store → broker. Each step is bounded; together they finish well within 10 s.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from flyball.settings import Settings
from infra.broker import EmbeddedBroker
from infra.cli_sql import UP_FILE
from infra.history import HistoryStore, redact
from infra.proc import child_preexec
from infra.query_server import QueryServer, remove_up_file, write_up_file
from infra.readonly_sql import QueryLimits
from infra.sink import HistorySink, SinkConfig
from infra.topics import ensure_topics
from schemas.signing import Keyring, generate_key, load_keyring, write_keyring

KEYRING_FILE = "control-keys.json"  # the worker signs with it (secret: mode 0600)
PUBLIC_KEYRING_FILE = "control-keys.public.json"  # what gateways verify with

log = logging.getLogger(__name__)

WORKER_MODULE = "streams.worker"
WORKER_STOP_TIMEOUT_S = 4.0


class EmbeddedStack:
    """Broker (if needed), topics, history store, sink, query endpoint and a stream worker.

    ``bootstrap``, ``store`` and ``settings`` (with ``data_dir`` resolved) are usable after
    ``start()``. ``worker=False`` runs no stream worker (a demo or test that feeds its own).
    """

    def __init__(
        self,
        settings: Settings,
        data_dir: Path | None = None,
        *,
        worker: bool = True,
        sink: bool = True,
        query: bool = True,
        sink_config: SinkConfig | None = None,
    ) -> None:
        data_dir = (data_dir or settings.data_dir).expanduser().resolve()
        self.settings = settings.model_copy(update={"data_dir": data_dir})
        self.data_dir = data_dir
        self.want_worker, self.want_sink, self.want_query = worker, sink, query
        self.sink_config = sink_config
        self.broker: EmbeddedBroker | None = None
        self.bootstrap = settings.kafka_bootstrap or ""
        self.topics: dict[str, int] = {}
        self._store: HistoryStore | None = None
        self._query_store: HistoryStore | None = None
        self.sink: HistorySink | None = None
        self.query_server: QueryServer | None = None
        self.worker_proc: subprocess.Popen[bytes] | None = None

    @property
    def store(self) -> HistoryStore:
        if self._store is None:
            raise RuntimeError("the stack is not started")
        return self._store

    @property
    def up_file(self) -> Path:
        return self.data_dir / UP_FILE

    # --- lifecycle ---
    def start(self) -> EmbeddedStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._ensure_keys()
        s = self.settings
        if s.embedded_broker:
            self.broker = EmbeddedBroker(log_path=self.data_dir / "broker.log").start()
            self.bootstrap = self.broker.bootstrap
            log.info("embedded broker (Tansu, in-memory log) on %s", self.bootstrap)
        self.topics = ensure_topics(s, self.bootstrap)
        self._store = HistoryStore(s)
        self._store.apply_ddl()
        if self.want_worker:
            self.worker_proc = start_worker(s, self.bootstrap)
        if self.want_sink:
            self.sink = HistorySink(s, self.bootstrap, self._store, self.sink_config).start()
        if self.want_query:
            # its own connection: a slow analyst query never holds the sink's inserts back
            self._query_store = HistoryStore(s)
            self.query_server = QueryServer(
                self._query_store,
                port=s.query_port,
                read_only=s.sql_read_only,
                limits=QueryLimits(s.sql_max_seconds, s.sql_max_rows),
            ).start()
            write_up_file(self.up_file, self.info(with_token=True))

    def _ensure_keys(self) -> None:
        """Signed by default: with no keys configured (and unsigned not allowed), use the data
        dir's keyring, generating an Ed25519 one on first start. The worker signs with it; local
        gateways verify with its public half (``keys=`` in the ready line)."""
        s = self.settings
        if s.allow_unsigned or s.keyring() is not None:
            return
        path = self.data_dir / KEYRING_FILE
        if not path.exists():
            kid = time.strftime("up-%Y%m%d-%H%M%S", time.gmtime())
            write_keyring(path, Keyring((generate_key(kid),), kid))
            log.info("generated the control keyring %s (Ed25519, key id %s)", path, kid)
        ring = load_keyring(path)
        write_keyring(self.public_keys_file, ring, public_only=True)
        self.settings = s.model_copy(update={"control_keys": path})

    @property
    def public_keys_file(self) -> Path:
        """The public keyring gateways verify with (written at start when the stack signs)."""
        return self.data_dir / PUBLIC_KEYRING_FILE

    def stop(self) -> None:
        """Stop everything that was started (idempotent; each step is bounded)."""
        if self.worker_proc is not None:
            stop_child(self.worker_proc, WORKER_STOP_TIMEOUT_S)
            self.worker_proc = None
        if self.sink is not None:
            self.sink.stop()
            self.sink = None
        if self.query_server is not None:
            self.query_server.stop()
            self.query_server = None
        remove_up_file(self.up_file)
        if self._query_store is not None:
            self._query_store.close()
            self._query_store = None
        if self._store is not None:
            self._store.close()
            self._store = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- descriptions ---
    @property
    def query_url(self) -> str | None:
        return self.query_server.url if self.query_server is not None else None

    def info(self, with_token: bool = False) -> dict[str, Any]:
        info: dict[str, Any] = {
            "pid": os.getpid(),
            "bootstrap": self.bootstrap,
            "history": redact(self.settings.history_dsn),
            "database": self.settings.clickhouse_database,
            "query": self.query_url,
            "broker_pid": self.broker.pid if self.broker is not None else None,
            "worker_pid": self.worker_proc.pid if self.worker_proc is not None else None,
            "started_ms": int(time.time() * 1000),
            "keys": str(self.public_keys_file) if self.public_keys_file.exists() else None,
        }
        if with_token and self.query_server is not None:
            info["token"] = self.query_server.token
        return info

    def ready_line(self) -> str:
        parts = [f"bootstrap={self.bootstrap}", f"history={redact(self.settings.history_dsn)}"]
        if self.query_url:
            parts.append(f"query={self.query_url}")
        if self.settings.control_keys is not None and self.public_keys_file.exists():
            parts.append(f"keys={self.public_keys_file}")
        parts.append(f"data_dir={self.data_dir}")
        return "flyball ready " + " ".join(parts)

    def problems(self) -> list[str]:
        """What has died since start (for the foreground loop to report)."""
        out = []
        if self.broker is not None and not self.broker.running:
            out.append("the embedded broker exited")
        if self.worker_proc is not None and self.worker_proc.poll() is not None:
            out.append(f"the stream worker exited with code {self.worker_proc.returncode}")
        return out


# --- the stream worker child ---
def worker_available() -> bool:
    try:
        return importlib.util.find_spec(WORKER_MODULE) is not None
    except ModuleNotFoundError:
        return False


def worker_env(settings: Settings, bootstrap: str) -> dict[str, str]:
    """The child's environment: this process's, plus every explicitly set setting as FLYBALL_*."""
    env = dict(os.environ)
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"FLYBALL_{name.upper()}"] = str(value)
    env["FLYBALL_DATA_DIR"] = str(settings.data_dir)
    env["FLYBALL_KAFKA_BOOTSTRAP"] = bootstrap
    env["FLYBALL_WORKER_SINK"] = "0"  # this process writes history; chDB allows one owner
    if env.get("FLYBALL_CONFIG"):  # the child runs in data_dir: keep a relative path valid
        env["FLYBALL_CONFIG"] = str(Path(env["FLYBALL_CONFIG"]).resolve())
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def start_worker(settings: Settings, bootstrap: str) -> subprocess.Popen[bytes] | None:
    if not worker_available():
        log.warning(
            "no stream worker (%s is not installed yet); running without one", WORKER_MODULE
        )
        return None
    proc = subprocess.Popen(
        [sys.executable, "-m", WORKER_MODULE],
        env=worker_env(settings, bootstrap),
        cwd=settings.data_dir,  # files a worker writes relative to its cwd stay in data_dir
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr.fileno(),  # stdout carries only the ready line
        start_new_session=True,  # its own process group: stopped as a whole
        preexec_fn=child_preexec(),
    )
    log.info("stream worker started (pid %d)", proc.pid)
    return proc


def stop_child(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM the child's process group, then SIGKILL it after ``timeout_s``."""
    if proc.poll() is not None:
        return
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("pid %d ignored SIGTERM for %.1f s; killing it", proc.pid, timeout_s)
    _signal_group(proc.pid, signal.SIGKILL)  # also reaps grandchildren left in the group
    proc.wait()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
