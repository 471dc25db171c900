"""One typed settings object for every Flyball process.

Sources, strongest first: explicit overrides (CLI flags), ``FLYBALL_*`` environment variables, the
TOML file (``flyball.toml`` in the working directory, or the path in ``FLYBALL_CONFIG``). In the
TOML file a section prefixes its keys: ``[kafka] bootstrap = "…"`` is ``kafka_bootstrap``, whose
environment variable is ``FLYBALL_KAFKA_BOOTSTRAP``. Secrets are ``SecretStr``: they print as
``**********`` and never appear in logs or ``--help``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from flyball.errors import ConfigError
from schemas.signing import Keyring, KeyringError, hmac_keyring, load_keyring

ENV_PREFIX = "FLYBALL_"
DEFAULT_CONFIG_FILE = "flyball.toml"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "flyball"


class Settings(BaseSettings):
    """Flyball's settings; ``flyball --help`` lists every field with its env variable."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=True
    )

    # --- Kafka (the event log) ---
    kafka_bootstrap: str | None = Field(
        None, description="Kafka bootstrap servers (host:port,…). Unset: start the embedded broker."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security.protocol"
    )
    kafka_sasl_mechanism: str | None = Field(
        None, description="Kafka sasl.mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, …)"
    )
    kafka_sasl_username: str | None = Field(None, description="Kafka SASL username")
    kafka_sasl_password: SecretStr | None = Field(None, description="Kafka SASL password (secret)")
    kafka_ssl_ca_location: str | None = Field(None, description="CA certificate file for TLS")
    kafka_ssl_certificate_location: str | None = Field(
        None, description="client certificate file (mutual TLS)"
    )
    kafka_ssl_key_location: str | None = Field(None, description="client key file (mutual TLS)")
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="client key password (secret)"
    )
    kafka_session_timeout_ms: int = Field(
        6_000, ge=1_000, description="consumer-group session timeout; short joins fast on Tansu"
    )
    kafka_idempotence: bool = Field(
        True,
        description="worker outputs (directives, features, scores, dead letters): acks=all with "
        "an idempotent producer (no loss, no duplicates on retry); off only for a broker "
        "without idempotent producers",
    )

    # --- topics ---
    topic_events: str = Field("flyball.events", description="request-event frames (gateways →)")
    topic_features: str = Field("flyball.features", description="window feature records")
    topic_scores: str = Field("flyball.scores", description="detector score records")
    topic_control: str = Field("flyball.control", description="directives (→ gateways)")
    topic_deadletter: str = Field("flyball.deadletter", description="bad input with its reason")
    topic_events_partitions: int = Field(4, ge=1, description="partitions of the events topic")
    topic_control_partitions: int = Field(1, ge=1, description="partitions of the control topic")
    topic_replication: int = Field(1, ge=1, description="replication factor of created topics")

    # --- ClickHouse (the history) ---
    clickhouse_dsn: str | None = Field(
        None,
        description="chdb:///path (in-process) or http(s)://host:port; unset: chdb in data_dir",
    )
    clickhouse_user: str = Field("default", description="ClickHouse user (server only)")
    clickhouse_password: SecretStr | None = Field(None, description="ClickHouse password (secret)")
    clickhouse_database: str = Field("flyball", description="ClickHouse database for history")
    clickhouse_ttl_days: int = Field(30, ge=1, description="days of raw events kept in history")

    # --- local process ---
    data_dir: Path = Field(default_factory=default_data_dir, description="embedded stack's files")
    query_port: int = Field(
        0, ge=0, le=65535, description="loopback port of `flyball up`'s query endpoint (0: any)"
    )
    sql_read_only: bool = Field(
        True,
        description="`flyball sql` / the query endpoint: reads only (no DDL, writes, settings, "
        "file or network functions); false: any statement (trusted operators only)",
    )
    sql_max_seconds: int = Field(30, ge=1, description="`flyball sql`: execution time per query")
    sql_max_rows: int = Field(100_000, ge=1, description="`flyball sql`: result rows per query")
    control_keys: Path | None = Field(
        None,
        description="keyring file (JSON, `flyball keygen`) of the keys that sign/verify "
        "directives (Ed25519 or HMAC, several valid at once); `flyball up` writes one",
    )
    signing_key: SecretStr | None = Field(
        None, description="shorthand for a one-key HMAC keyring: the shared secret (>= 16 bytes)"
    )
    signing_key_id: str = Field("k1", description="key id of `signing_key`")
    allow_unsigned: bool = Field(
        False,
        description="accept (gateways) and send (workers) unsigned directives: anyone who can "
        "write the control topic then constrains traffic; for isolated tests only",
    )
    max_clock_skew_ms: int = Field(
        5_000, ge=0, description="gateways: refuse directives issued further ahead of their clock"
    )
    gateway_silence_ms: int = Field(
        10_000, ge=1, description="gateways: governor silence before `governor_unreachable`"
    )
    gateway_fail_mode: Literal["open", "expire"] = Field(
        "open",
        description="gateways while the governor is silent: admit all, or enforce until expiry",
    )
    governor_config: Path | None = Field(
        None, description="TOML file of governor (detector/policy) settings; unset: defaults"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")

    @field_validator("kafka_bootstrap", "clickhouse_dsn")
    @classmethod
    def _blank_is_unset(cls, v: str | None) -> str | None:
        return v or None

    @field_validator("clickhouse_dsn")
    @classmethod
    def _dsn_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("chdb://", "http://", "https://")):
            raise ValueError("must start with chdb://, http:// or https://")
        return v

    @field_validator("clickhouse_database")
    @classmethod
    def _db_name(cls, v: str) -> str:
        if not v.replace("_", "").isalnum():
            raise ValueError("must be letters, digits and underscores")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _TomlSource(settings_cls)

    # --- derived values ---
    def with_topic_prefix(self, prefix: str, **overrides: Any) -> Settings:
        """A copy whose topics are ``PREFIX.events``, ``PREFIX.control``, … (isolated runs)."""
        topics = {
            f"topic_{name}": f"{prefix}.{name}"
            for name in ("events", "features", "scores", "control", "deadletter")
        }
        return self.model_copy(update={**topics, **overrides})

    @property
    def embedded_broker(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def history_dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{(self.data_dir / 'history').resolve()}"

    @property
    def signing_key_bytes(self) -> bytes | None:
        return self.signing_key.get_secret_value().encode() if self.signing_key else None

    def keyring(self) -> Keyring | None:
        """The control keyring: ``control_keys`` (a file), else ``signing_key`` (one HMAC key),
        else None. A bad keyring raises ``ConfigError``."""
        try:
            if self.control_keys is not None:
                return load_keyring(self.control_keys)
            secret = self.signing_key_bytes
            return hmac_keyring(secret, self.signing_key_id) if secret else None
        except KeyringError as e:
            raise ConfigError(f"control keys: {e}") from None

    def kafka_output_config(self, bootstrap: str | None = None) -> dict[str, str]:
        """``kafka_client_config`` plus the delivery guarantees of Flyball's own outputs."""
        conf = self.kafka_client_config(bootstrap)
        conf["acks"] = "all"
        conf["enable.idempotence"] = "true" if self.kafka_idempotence else "false"
        return conf

    def kafka_client_config(self, bootstrap: str | None = None) -> dict[str, str]:
        """confluent-kafka (librdkafka) options: bootstrap plus TLS/SASL pass-through."""
        servers = bootstrap or self.kafka_bootstrap
        if servers is None:
            raise ConfigError("kafka_bootstrap is unset and no embedded broker address was given")
        conf = {"bootstrap.servers": servers, "security.protocol": self.kafka_security_protocol}
        optional = {
            "sasl.mechanism": self.kafka_sasl_mechanism,
            "sasl.username": self.kafka_sasl_username,
            "sasl.password": _reveal(self.kafka_sasl_password),
            "ssl.ca.location": self.kafka_ssl_ca_location,
            "ssl.certificate.location": self.kafka_ssl_certificate_location,
            "ssl.key.location": self.kafka_ssl_key_location,
            "ssl.key.password": _reveal(self.kafka_ssl_key_password),
        }
        conf.update({k: v for k, v in optional.items() if v is not None})
        return conf


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


class _TomlSource(PydanticBaseSettingsSource):
    """``flyball.toml`` (or ``$FLYBALL_CONFIG``), sections flattened into ``section_key``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole mapping

    def __call__(self) -> dict[str, Any]:
        return read_toml(config_path())


def config_path() -> Path:
    return Path(os.environ.get(f"{ENV_PREFIX}CONFIG", DEFAULT_CONFIG_FILE))


def read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        if f"{ENV_PREFIX}CONFIG" in os.environ:
            raise ConfigError(f"config file {path} (FLYBALL_CONFIG) does not exist")
        return {}
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                flat[f"{key}_{sub}"] = subvalue
        else:
            flat[key] = value
    return flat


def load_settings(**overrides: Any) -> Settings:
    """Read and validate settings; raise ``ConfigError`` naming each bad key and its env var."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else "?"
            problems.append(
                f"setting {key!r} ({ENV_PREFIX}{key.upper()}): {err['msg']}"
                if err["type"] != "extra_forbidden"
                else f"unknown setting {key!r} (in {config_path()} or overrides)"
            )
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems)) from None


def describe_settings() -> list[tuple[str, str, str]]:
    """(env var, TOML key, description) for every setting, for ``--help``."""
    rows = []
    for name, info in Settings.model_fields.items():
        section, _, key = name.partition("_")
        toml_key = f"{section}.{key}" if section in {"kafka", "topic", "clickhouse"} else name
        rows.append((f"{ENV_PREFIX}{name.upper()}", toml_key, info.description or ""))
    return rows
