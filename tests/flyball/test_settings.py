"""Settings: sources and their order, validation errors naming the key, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from flyball.cli import build_parser, main
from flyball.errors import ConfigError
from flyball.settings import load_settings


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("FLYBALL_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_defaults_mean_embedded_stack(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path)
    assert s.embedded_broker
    assert s.history_dsn == f"chdb://{(tmp_path / 'history').resolve()}"


def test_toml_sections_then_env_then_overrides(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "flyball.toml").write_text(
        '[kafka]\nbootstrap = "toml:9092"\nsasl_username = "u"\n[topic]\nevents = "ev"\n'
    )
    s = load_settings()
    assert (s.kafka_bootstrap, s.kafka_sasl_username, s.topic_events) == ("toml:9092", "u", "ev")
    monkeypatch.setenv("FLYBALL_KAFKA_BOOTSTRAP", "env:9092")
    assert load_settings().kafka_bootstrap == "env:9092"
    assert load_settings(kafka_bootstrap="flag:9092").kafka_bootstrap == "flag:9092"


def test_security_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYBALL_KAFKA_BOOTSTRAP", "k:9093")
    monkeypatch.setenv("FLYBALL_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("FLYBALL_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("FLYBALL_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("FLYBALL_KAFKA_SASL_PASSWORD", "hunter2")
    conf = load_settings().kafka_client_config()
    assert conf == {
        "bootstrap.servers": "k:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": "hunter2",
    }


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("FLYBALL_TOPIC_EVENTS_PARTITIONS", "zero", "topic_events_partitions"),
        ("FLYBALL_TOPIC_EVENTS_PARTITIONS", "0", "topic_events_partitions"),
        ("FLYBALL_KAFKA_SECURITY_PROTOCOL", "CARRIER_PIGEON", "kafka_security_protocol"),
        ("FLYBALL_CLICKHOUSE_DSN", "mysql://x", "clickhouse_dsn"),
        ("FLYBALL_CLICKHOUSE_DATABASE", "a;DROP", "clickhouse_database"),
        ("FLYBALL_QUERY_PORT", "70000", "query_port"),
    ],
)
def test_bad_values_name_the_key_and_env_var(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert named in str(info.value)
    assert env in str(info.value)


def test_unknown_toml_key_is_named(tmp_path: Path) -> None:
    (tmp_path / "flyball.toml").write_text("[kafka]\nbootstrapp = 'x'\n")
    with pytest.raises(ConfigError, match="kafka_bootstrapp"):
        load_settings()


def test_broken_toml_and_missing_config_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "flyball.toml").write_text("[kafka\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings()
    monkeypatch.setenv("FLYBALL_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()


def test_secrets_never_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLYBALL_SIGNING_KEY", "topsecret-signing")
    monkeypatch.setenv("FLYBALL_KAFKA_SASL_PASSWORD", "topsecret-sasl")
    s = load_settings()
    assert "topsecret" not in repr(s) and "topsecret" not in str(s)
    assert s.signing_key_bytes == b"topsecret-signing"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    assert "topsecret" not in capsys.readouterr().out


def test_help_lists_every_setting_with_env_var(capsys: pytest.CaptureFixture[str]) -> None:
    from flyball.settings import Settings

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for name in Settings.model_fields:
        assert f"FLYBALL_{name.upper()}" in out


def test_cli_reports_config_errors_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLYBALL_QUERY_PORT", "-1")
    assert main(["sql", "SELECT 1"]) == 2
    err = capsys.readouterr().err
    assert "FLYBALL_QUERY_PORT" in err and "Traceback" not in err


def test_with_topic_prefix_renames_every_topic_and_applies_overrides() -> None:
    s = load_settings().with_topic_prefix("run7", log_level="WARNING")
    assert (s.topic_events, s.topic_features, s.topic_scores, s.topic_control,
            s.topic_deadletter) == ("run7.events", "run7.features", "run7.scores",
                                    "run7.control", "run7.deadletter")
    assert s.log_level == "WARNING"


def test_flyball_outputs_are_acknowledged_by_all_replicas_and_idempotent() -> None:
    """Hardening #8: directives, features, scores and dead letters are not lost to a leader
    change and not duplicated by a producer retry."""
    from flyball.settings import load_settings as load

    s = load(kafka_bootstrap="127.0.0.1:9")
    conf = s.kafka_output_config()
    assert conf["acks"] == "all" and conf["enable.idempotence"] == "true"
    assert "acks" not in s.kafka_client_config()  # consumers and gateways: unchanged
    off = load(kafka_bootstrap="127.0.0.1:9", kafka_idempotence=False).kafka_output_config()
    assert off["enable.idempotence"] == "false" and off["acks"] == "all"
