"""The Faust application: broker, credentials, tuning for short rebalances, raw-bytes topics.

Everything on the wire is bytes we encode ourselves (``schemas``), so every topic uses Faust's
``raw`` serializer. Topics are created by ``infra.topics.ensure_topics`` before the app starts;
Faust declares nothing (``topic_allow_declare=False``, no leader topic). The web server is off.

The consumer's fetch wait is short (``fetch_wait_ms``, 20 ms, ``FLYBALL_WORKER_FETCH_WAIT_MS``):
Faust's aiokafka driver hard-codes ``fetch_max_wait_ms=1500`` and has no setting for it, and a
broker that does not answer a waiting fetch as soon as data arrives (Tansu, the embedded broker)
then holds every fetch for up to 1.5 s, i.e. up to 1.5 s between an event's produce and the
worker seeing it. ``GovernorApp`` therefore builds its transport from ``FlyballTransport``, whose
consumer thread lowers the wait on the ``AIOKafkaConsumer`` Faust creates, before it starts.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiokafka
import faust
from aiokafka.helpers import create_ssl_context
from faust.transport.consumer import RecordMap
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, TransportT

from flyball.errors import ConfigError
from flyball.settings import Settings

FETCH_WAIT_ENV = "FLYBALL_WORKER_FETCH_WAIT_MS"
DEFAULT_FETCH_WAIT_MS = 20


def fetch_wait_from_env(default: int = DEFAULT_FETCH_WAIT_MS) -> int:
    """The consumer's fetch wait in ms: ``FLYBALL_WORKER_FETCH_WAIT_MS`` or ``default``."""
    raw = os.environ.get(FETCH_WAIT_ENV, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{FETCH_WAIT_ENV} must be an integer (ms), got {raw!r}") from None
    if not 0 <= value <= 60_000:
        raise ConfigError(f"{FETCH_WAIT_ENV} must be within 0 … 60000 ms, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class AppTuning:
    """Faust settings the worker shell chooses (not user-facing settings)."""

    stream_buffer_maxsize: int = 1024  # messages (frames) buffered per agent before fetch pauses
    commit_interval_ms: int = 1_000  # Faust commits acked offsets at this period
    heartbeat_interval_ms: int = 1_000
    consumer_max_fetch_size: int = 8 * 1024 * 1024
    # how long the broker may hold a fetch that has no data (Faust's own value: 1500 ms)
    fetch_wait_ms: int = field(default_factory=fetch_wait_from_env)


def app_id(settings: Settings) -> str:
    """The consumer group: one per events topic, so separate pipelines never share a group."""
    return "flyball-worker-" + re.sub(r"[^A-Za-z0-9._-]", "_", settings.topic_events)


def broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def broker_credentials(settings: Settings) -> Any:
    """TLS/SASL pass-through from settings to Faust (aiokafka); ``None`` for plaintext."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context: ssl.SSLContext | None = None
    if protocol in ("SSL", "SASL_SSL"):
        key_password = settings.kafka_ssl_key_password
        context = create_ssl_context(
            cafile=settings.kafka_ssl_ca_location,
            certfile=settings.kafka_ssl_certificate_location,
            keyfile=settings.kafka_ssl_key_location,
            password=key_password.get_secret_value() if key_password else None,
        )
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    password = settings.kafka_sasl_password
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=password.get_secret_value() if password else None,
        mechanism=settings.kafka_sasl_mechanism or "PLAIN",
        ssl_context=context,
    )


class FlyballConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread with the app's fetch wait instead of 1500 ms."""

    def _create_worker_consumer(
        self, transport: faust_aiokafka.Transport
    ) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this attribute once, when ``start()`` builds its Fetcher; Faust starts
        # the consumer after this returns. Fail loudly if an upgrade renames it.
        if not hasattr(consumer, "_fetch_max_wait_ms"):
            raise RuntimeError("aiokafka.AIOKafkaConsumer has no _fetch_max_wait_ms any more")
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_wait_ms", DEFAULT_FETCH_WAIT_MS)
        return consumer


class FlyballConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with the short fetch wait and a short flow-control poll.

    When the agent's buffer is full for every assigned partition (a backlog), Faust's fetch loop
    sleeps a whole second before it looks again, although the buffer drains within a batch or
    two: a worker that fell behind then stalled ~1 s in every 1.3 s (measured with
    ``flyball bench loop``). Here it looks again after ``FLOW_POLL_S``.
    """

    FLOW_POLL_S = 0.01

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return FlyballConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _wait_next_records(self, timeout: float) -> tuple[RecordMap | None, set[TP] | None]:
        if self.flow_active and not self.app.client_only and not self._get_active_partitions():
            await self.sleep(self.FLOW_POLL_S)
            return {}, set()
        return await super()._wait_next_records(timeout)


class FlyballTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport (``kafka://``) with ``FlyballConsumer``."""

    Consumer = FlyballConsumer


class GovernorApp(faust.App):
    """``faust.App`` with a short consumer fetch wait and a ``before_stop`` hook.

    ``before_stop`` runs before the consumer stops. Faust's stop waits until every consumed
    message is acked; the worker holds acks until its checkpoint, so it must checkpoint first
    (its timers have already stopped by then).
    """

    before_stop: Callable[[], Awaitable[None]] | None = None
    fetch_wait_ms: int = DEFAULT_FETCH_WAIT_MS

    def _new_transport(self) -> TransportT:
        # Faust picks the transport class by URL scheme (``kafka://`` -> aiokafka); ours is that
        # class with another consumer thread. Same arguments as ``faust.App._new_transport``.
        return FlyballTransport(self.conf.broker_consumer, self)

    async def on_stop(self) -> None:
        if self.before_stop is not None:
            await self.before_stop()
        await super().on_stop()


def build_app(settings: Settings, bootstrap: str, tuning: AppTuning | None = None) -> GovernorApp:
    tuning = tuning or AppTuning()
    session_s = settings.kafka_session_timeout_ms / 1000
    ident = app_id(settings)
    datadir = Path(settings.data_dir) / "worker" / ident
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = GovernorApp(
        ident,
        broker=broker_urls(bootstrap),
        broker_credentials=broker_credentials(settings),
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session_s,
        broker_heartbeat_interval=min(tuning.heartbeat_interval_ms / 1000, session_s / 3),
        broker_commit_interval=tuning.commit_interval_ms / 1000,
        stream_buffer_maxsize=tuning.stream_buffer_maxsize,
        consumer_max_fetch_size=tuning.consumer_max_fetch_size,
        datadir=str(datadir),
    )
    app.fetch_wait_ms = tuning.fetch_wait_ms
    return app
