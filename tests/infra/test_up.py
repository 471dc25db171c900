"""``flyball up`` as a subprocess, and the EmbeddedStack against an already running Kafka."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flyball.settings import Settings, load_settings
from infra.broker import EmbeddedBroker
from infra.stack import EmbeddedStack
from infra.topics import list_topics
from schemas.control import open_control
from schemas.directive import Action, Directive, Reason, Scope, seal
from schemas.frames import encode_frame
from tests.infra._support import now_ms, produce, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYBALL_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def flyball(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flyball.cli", *args],
        env=child_env(), cwd=cwd, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - out
        out |= frontier
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_flyball_up_ready_sql_and_clean_sigterm(tmp_path: Path) -> None:
    data_dir = tmp_path / "fb"
    proc = subprocess.Popen(
        [sys.executable, "-m", "flyball.cli", "up", "--data-dir", str(data_dir)],
        env=child_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()

    def read_stdout() -> None:
        for ln in proc.stdout or []:
            lines.put(ln)

    threading.Thread(target=read_stdout, daemon=True).start()
    stderr: list[str] = []
    threading.Thread(target=lambda: stderr.extend(proc.stderr or []), daemon=True).start()
    try:
        try:
            ready = lines.get(timeout=30)
        except queue.Empty:
            pytest.fail("no ready line within 30 s:\n" + "".join(stderr))
        assert ready.startswith("flyball ready "), ready
        fields = dict(p.split("=", 1) for p in ready.split()[2:])
        bootstrap = fields["bootstrap"]
        assert fields["history"] == f"chdb://{data_dir.resolve() / 'history'}"
        assert fields["query"].startswith("http://127.0.0.1:")
        # signed by default: a generated Ed25519 keyring; gateways get its public half
        public = Path(fields["keys"])
        assert public == data_dir.resolve() / "control-keys.public.json"
        assert "private" not in public.read_text()
        assert (data_dir / "control-keys.json").stat().st_mode & 0o077 == 0

        up = json.loads((data_dir / "up.json").read_text())
        assert (data_dir / "up.json").stat().st_mode & 0o777 == 0o600
        assert up["pid"] == proc.pid and up["bootstrap"] == bootstrap and up["token"]
        broker_pid = up["broker_pid"]
        assert alive(broker_pid)

        settings = load_settings(data_dir=data_dir)
        topics = list_topics(settings, bootstrap)
        assert topics[settings.topic_events] == settings.topic_events_partitions
        assert {settings.topic_control, settings.topic_deadletter} <= set(topics)

        t0 = now_ms()
        cols: dict[str, list[Any]] = {
            "event_id": [f"u{i}" for i in range(25)],
            "ts_ms": [t0 + i for i in range(25)],
            "endpoint": ["ep"] * 25,
            "status": ["ok"] * 25,
        }
        produce(bootstrap, settings.topic_events, [("ep", encode_frame("gw", "ep", cols))])

        def count() -> int:
            r = flyball("sql", "SELECT count() AS n FROM flyball.events", "--format", "json",
                        "--data-dir", str(data_dir), cwd=tmp_path)  # fmt: skip
            assert r.returncode == 0, r.stderr
            return int(json.loads(r.stdout)[0]["n"])

        wait_until(lambda: count() == 25, 20, "the frame's rows through `flyball sql`")
        bad = flyball(
            "sql", "SELECT nope FROM flyball.events", "--data-dir", str(data_dir), cwd=tmp_path
        )
        assert bad.returncode != 0 and "nope" in bad.stderr

        children = descendants(proc.pid)
        assert broker_pid in children
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t < 10
        wait_until(lambda: not any(alive(p) for p in children), 3, "no child left behind")
        assert not (data_dir / "up.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_stack_signs_by_default_with_one_keyring_across_restarts(
    settings: Settings, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    s = settings.model_copy(update={
        "kafka_bootstrap": broker.bootstrap, "signing_key": None, "control_keys": None,
    })
    d = Directive("x", now_ms(), now_ms() + 3_000, Scope(endpoint="ep"), Action("shed"),
                  Reason("retry_storm", 1.0))
    with EmbeddedStack(s, tmp_path / "st", worker=False, sink=False, query=False) as stack:
        ring = stack.settings.keyring()
        assert ring is not None and ring.signer is not None
        assert ring.signer.alg == "ed25519"
        assert f"keys={stack.public_keys_file}" in stack.ready_line()
        _, wire = seal(d, ring)
    gateway = load_settings(control_keys=tmp_path / "st" / "control-keys.public.json")
    assert isinstance(open_control(wire, gateway.keyring(), allow_unsigned=False), Directive)
    with EmbeddedStack(s, tmp_path / "st", worker=False, sink=False, query=False) as again:
        assert again.settings.keyring().signer.kid == ring.signer.kid  # type: ignore[union-attr]
    # opting out generates nothing: gateways then must allow unsigned directives too
    opt_out = s.model_copy(update={"allow_unsigned": True})
    with EmbeddedStack(opt_out, tmp_path / "u", worker=False, sink=False, query=False) as st:
        assert st.settings.keyring() is None and "keys=" not in st.ready_line()


def test_stack_uses_a_configured_kafka_and_starts_no_broker(
    settings: Settings, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    s = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
    with EmbeddedStack(s, tmp_path / "stack", worker=False) as stack:
        assert stack.broker is None and stack.bootstrap == broker.bootstrap
        assert stack.ready_line().startswith(f"flyball ready bootstrap={broker.bootstrap} ")
        assert set(stack.topics) == {s.topic_events, s.topic_features, s.topic_scores,
                                     s.topic_control, s.topic_deadletter}  # fmt: skip
        assert (stack.data_dir / "up.json").exists()
        t0 = now_ms()
        frame = encode_frame("gw", "ep", {"ts_ms": [t0], "endpoint": ["ep"], "status": [0]})
        produce(broker.bootstrap, s.topic_events, [("ep", frame)])
        wait_until(lambda: stack.store.counts()["events"] == 1, 20, "row via the stack's sink")
    assert not (tmp_path / "stack" / "up.json").exists()
    assert broker.running
