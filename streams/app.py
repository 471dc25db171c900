"""The Faust application: broker, credentials, tuning for short rebalances, raw-bytes topics.

Everything on the wire is bytes we encode ourselves (``schemas``), so every topic uses Faust's
``raw`` serializer. Topics are created by ``infra.topics.ensure_topics`` before the app starts;
Faust declares nothing (``topic_allow_declare=False``, no leader topic). The web server is off.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from aiokafka.helpers import create_ssl_context

from flyball.settings import Settings


@dataclass(frozen=True, slots=True)
class AppTuning:
    """Faust settings the worker shell chooses (not user-facing settings)."""

    stream_buffer_maxsize: int = 256  # messages (frames) buffered per agent before fetch pauses
    commit_interval_ms: int = 1_000  # Faust commits acked offsets at this period
    heartbeat_interval_ms: int = 1_000
    consumer_max_fetch_size: int = 8 * 1024 * 1024


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


class GovernorApp(faust.App):
    """``faust.App`` with one hook: ``before_stop`` runs before the consumer stops.

    Faust's stop waits until every consumed message is acked; the worker holds acks until its
    checkpoint, so it must checkpoint first (its timers have already stopped by then).
    """

    before_stop: Callable[[], Awaitable[None]] | None = None

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
    return GovernorApp(
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
