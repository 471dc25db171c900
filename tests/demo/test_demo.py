"""``flyball demo`` end to end, as a subprocess: the real broker, stream workers, gateways, chDB.

A subprocess, because chDB hosts one data path per process (other test modules open their own).
Every process the demo starts inherits a marker variable, so the tests can tell that none is left.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MARK = "FLYBALL_DEMO_TEST_MARK"  # not a setting: FLYBALL_* keys unknown to Settings are ignored

# keys of sim.metrics.compute that the live runs must report too
METRIC_KEYS = {
    "offered_intents", "completed_intents", "goodput_ratio", "attempts", "attempts_per_intent",
    "waste_fraction", "latency_p50_ms", "latency_p99_ms", "recovery_s", "jain_fairness",
    "directives_by_kind", "directive_messages", "timeline",
}  # fmt: skip


def child_env(mark: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYBALL_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env[MARK] = mark
    return env


def marked_processes(mark: str) -> list[int]:
    """Live processes whose environment carries ``MARK=mark`` (the demo and its children)."""
    needle = f"{MARK}={mark}".encode()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env.split(b"\0") and state != "Z":
            out.append(int(entry.name))
    return out


def wait_gone(mark: str, timeout_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    left = marked_processes(mark)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = marked_processes(mark)
    return left


def test_short_demo_json(tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "flyball.cli", "demo", "--json", "--duration-s", "20",
         "--out", str(out)],
        env=child_env(mark), cwd=tmp_path, capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    wall = time.monotonic() - t0
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    # exit code 1 only for "governed did not beat ungoverned", which a 20 s run may not show
    failed = {k for k, ok in report["checks"].items() if not ok}
    assert failed <= {"governed_goodput_above_ungoverned"}, (failed, proc.stderr[-3000:])
    assert proc.returncode == (1 if failed else 0)

    for run in ("ungoverned", "governed"):
        m = report[run]
        assert m.keys() >= METRIC_KEYS, METRIC_KEYS - m.keys()
        assert m["policy"] == run
        assert m["offered_intents"] > 500
        live = m["live"]
        assert live["events_sent"] == live["events_emitted"] > 0
        assert live["events_dropped"] == 0
        assert live["heartbeats"] > 0
    # the storm is seen in both runs; only the governed gateways enforce
    assert report["ungoverned"]["live"]["deferred"] + report["ungoverned"]["live"]["rejected"] == 0
    gov = report["governed"]["live"]
    assert gov["directives_applied"] >= 1
    assert gov["deferred"] + gov["rejected"] > 0
    assert report["directives_issued"] >= 1
    assert report["directives_issued_by_run"]["governed"] >= 1

    rows = report["history_rows"]
    assert set(rows) == {"events", "features", "scores", "directives"}
    assert all(rows[t] > 0 for t in rows), rows
    emitted = sum(report[r]["live"]["events_emitted"] for r in ("ungoverned", "governed"))
    assert rows["events"] == emitted

    assert (out / "report.json").is_file()
    assert json.loads((out / "report.json").read_text())["history_rows"] == rows
    png = (out / "timeline.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert wall < 100, f"a 20 s demo took {wall:.0f} s"
    assert wait_gone(mark) == []


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-m", "flyball.cli", "demo", "--out", str(tmp_path / "out")],
        env=child_env(mark), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for ln in proc.stderr or []:
            lines.put(ln)

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        seen = ""
        while "worker ready" not in seen and time.monotonic() < deadline:
            try:
                seen += lines.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, seen
        assert "worker ready" in seen, seen
        time.sleep(3)  # inside the first run: gateways, sink, workers all running
        assert len(marked_processes(mark)) >= 4  # demo, broker, two workers
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        assert wait_gone(mark) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in marked_processes(mark):
            os.kill(pid, signal.SIGKILL)
