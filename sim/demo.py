"""``flyball demo``: the whole system, live, on the embedded stack — ungoverned, then governed.

What runs (nothing is a mock):

- the embedded stack (``infra.stack.EmbeddedStack``): the Tansu broker and the in-process
  ClickHouse engine (chDB) with the history schema;
- per run, a fresh set of topics, one stream worker child process (``python -m streams.worker``,
  the Faust shell around ``detectors.governor``) and one history sink (``infra.sink``) writing the
  run's events, features, scores and directives into ClickHouse;
- per run, the simulated agent fleet of a time-compressed ``retry-storm`` (``demo_scenario``) in
  real time (``sim.realtime``): every attempt goes through a real ``gateway.client.Gateway``
  (``admit`` against the directives the worker publishes on the control topic; ``emit`` to the
  events topic).

Run 1, *ungoverned*: the gateways emit but do not enforce (the governor still watches and
publishes; nobody listens). Run 2, *governed*: the gateways enforce the directives. Both runs use
the same seed, so the same agents make the same intents at the same times.

Output: a progress bar per run, a before/after table, ``OUT/report.json`` and ``OUT/timeline.png``
(goodput, attempts and directives per second). ``--json`` prints the report instead of the table.
Exit code 0 when the demo showed what it should (governed goodput above ungoverned, at least one
directive, rows in all four history tables), 1 otherwise, 2 for a setup error, 130 on Ctrl-C.
Everything started is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from flyball import __version__
from flyball.errors import ConfigError, FlyballError
from flyball.settings import Settings
from gateway.client import Gateway
from infra.history import HistoryStore
from infra.proc import child_preexec
from infra.sink import HistorySink, SinkConfig
from infra.stack import WORKER_MODULE, EmbeddedStack, stop_child, worker_available, worker_env
from infra.topics import ensure_topics
from sim.engine import RunResult
from sim.metrics import compute
from sim.realtime import ControlTap, LiveEngine, LivePolicy
from sim.scenario import SCENARIO_DIR, Scenario, parse_scenario

log = logging.getLogger(__name__)

DEFAULT_DURATION_S: Final = 40
MIN_DURATION_S: Final = 15
BASE_SCENARIO: Final = "retry-storm"
REPORT_FILE: Final = "report.json"
PLOT_FILE: Final = "timeline.png"
DATA_MARKER: Final = ".flyball-demo"
WORKER_READY_TIMEOUT_S: Final = 45.0
WORKER_SETTLE_S: Final = 1.5  # after the last event: idle watermark (0.5 s) + ticks + publish
SINK_DRAIN_TIMEOUT_S: Final = 10.0
HISTORY_TABLES: Final = ("events", "features", "scores", "directives")


class DemoError(FlyballError):
    """The demo could not run (a component did not start)."""


# --- the scenario -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DemoPlan:
    """How ``retry-storm`` is compressed into ``run_s`` seconds of real time."""

    run_s: int
    arrivals_s: float
    fault_start_s: float
    fault_end_s: float
    deadline_ms: int
    timeout_ms: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "base": BASE_SCENARIO,
            "run_s": self.run_s,
            "arrivals_s": self.arrivals_s,
            "fault_start_s": self.fault_start_s,
            "fault_end_s": self.fault_end_s,
            "deadline_ms": self.deadline_ms,
            "timeout_ms": self.timeout_ms,
        }


def demo_plan(run_s: int) -> DemoPlan:
    """Same physics as ``retry-storm`` (naive clients, a ×4 slowdown of the LLM service at ~70 %
    load turning into a metastable outage), shorter: the fault comes once the governor's baselines
    are learned (≥ 8 s of traffic), the agents' deadline is 6 s (4 s for runs under 30 s) so the
    drain after the last arrival (deadline + client timeout) fits in the run."""
    timeout_ms = 2_000
    deadline_ms = 6_000 if run_s >= 30 else 4_000
    arrivals_s = run_s - (deadline_ms + timeout_ms) / 1000
    long = arrivals_s >= 26
    start = 10.0 if long else 8.0
    return DemoPlan(run_s, arrivals_s, start, start + (5.0 if long else 4.0), deadline_ms,
                    timeout_ms)


def demo_scenario(plan: DemoPlan) -> Scenario:
    doc = tomllib.loads((SCENARIO_DIR / f"{BASE_SCENARIO}.toml").read_text(encoding="utf-8"))
    doc = copy.deepcopy(doc)
    doc["name"] = f"{BASE_SCENARIO}-live"
    doc["description"] = (
        f"{BASE_SCENARIO} in {plan.run_s} s of real time: a ×4 slowdown of the LLM service at "
        f"{plan.fault_start_s:g}–{plan.fault_end_s:g} s under naive retries"
    )
    doc["duration_s"] = plan.arrivals_s
    fault = doc["services"][0]["faults"][0]
    fault["start_s"], fault["end_s"] = plan.fault_start_s, plan.fault_end_s
    for tenant in doc["tenants"]:
        tenant["deadline_ms"] = plan.deadline_ms
        tenant["retry"]["timeout_ms"] = plan.timeout_ms
    return parse_scenario(doc, doc["name"])


# --- one run's live parts -----------------------------------------------------------------------
@dataclass
class Run:
    name: str
    enforce: bool
    settings: Settings
    tag: str
    tap: ControlTap | None = None
    worker: subprocess.Popen[bytes] | None = None
    worker_log: Path | None = None
    sink: HistorySink | None = None
    gateways: list[Gateway] = field(default_factory=list)
    worker_ready_s: float | None = None
    result: RunResult | None = None
    metrics: dict[str, Any] | None = None
    live: dict[str, Any] = field(default_factory=dict)


def run_settings(base: Settings, demo_id: str, name: str) -> Settings:
    """``base`` with a fresh set of topics for one run (the worker's consumer group follows)."""
    prefix = f"flyball.demo.{demo_id}.{name}"
    quiet = "WARNING" if base.log_level in ("DEBUG", "INFO") else base.log_level
    return base.with_topic_prefix(prefix, log_level=quiet)


def start_worker(settings: Settings, bootstrap: str, log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m streams.worker`` for one run's topics; its output goes to ``log_path``."""
    if not worker_available():
        raise DemoError(f"the stream worker ({WORKER_MODULE}) is not installed")
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE],
            env=worker_env(settings, bootstrap),
            cwd=settings.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop it in order
            preexec_fn=child_preexec(),
        )


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(text)


def wait_worker_ready(run: Run, started: float) -> None:
    """Until the run's worker heartbeats on its control topic (it runs and can publish)."""
    assert run.tap is not None and run.worker is not None
    deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
    while not run.tap.heard.wait(0.1):
        code = run.worker.poll()
        if code is not None:
            raise DemoError(
                f"the {run.name} stream worker exited with code {code}:\n{_tail(run.worker_log)}"
            )
        if time.monotonic() > deadline:
            raise DemoError(
                f"the {run.name} stream worker sent no heartbeat within "
                f"{WORKER_READY_TIMEOUT_S:.0f} s:\n{_tail(run.worker_log)}"
            )
    first = run.tap.first_heartbeat_mono or time.monotonic()
    run.worker_ready_s = round(first - started, 2)


# --- progress -----------------------------------------------------------------------------------
class RunProgress:
    """Feeds a rich progress task from the engine's live numbers."""

    def __init__(self, progress: Progress, task: TaskID, engine: LiveEngine, plan: DemoPlan):
        self.progress = progress
        self.task = task
        self.engine = engine
        self.plan = plan
        self._window: deque[tuple[int, int]] = deque()

    def __call__(self, now_ms: int) -> None:
        s = self.engine.snapshot(now_ms)
        self._window.append((now_ms, s["attempts"]))
        while len(self._window) > 1 and now_ms - self._window[0][0] > 1_000:
            self._window.popleft()
        t0, a0 = self._window[0]
        rate = (s["attempts"] - a0) * 1000.0 / (now_ms - t0) if now_ms > t0 else 0.0
        fault = self.plan.fault_start_s <= s["now_s"] < self.plan.fault_end_s
        info = (
            f"good {s['completed']:>4}/{s['arrived']:<4} {rate:4.0f} att/s "
            f"{s['directives']:>3} directives"
            + (" [red]FAULT[/red]" if fault else "")
            + (f"  [yellow]lag {s['lag_ms']:.0f} ms[/yellow]" if s["lag_ms"] > 250 else "")
        )
        self.progress.update(self.task, completed=min(s["now_s"], self.plan.run_s), info=info)


# --- the demo -----------------------------------------------------------------------------------
def run_demo(
    settings: Settings, as_json: bool, out_dir: Path, duration_s: int | None = None
) -> int:
    """Run the live demo; see the module docstring. Returns the process exit code."""
    run_s = DEFAULT_DURATION_S if duration_s is None else int(duration_s)
    if run_s < MIN_DURATION_S:
        raise ConfigError(f"--duration-s must be at least {MIN_DURATION_S} (got {run_s})")
    started = time.monotonic()
    out_dir = out_dir.expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    err = Console(stderr=True)
    data_dir = prepare_data_dir(settings, out_dir)
    with _demo_logging(err, data_dir / "demo.log"):
        return _run(settings, as_json, out_dir, data_dir, run_s, started, err)


def _run(
    settings: Settings,
    as_json: bool,
    out_dir: Path,
    data_dir: Path,
    run_s: int,
    started: float,
    err: Console,
) -> int:
    base = settings.model_copy(update={"data_dir": data_dir})
    plan = demo_plan(run_s)
    scenario = demo_scenario(plan)
    demo_id = uuid.uuid4().hex[:8]
    runs = [
        Run("ungoverned", False, run_settings(base, demo_id, "ungoverned"), demo_id),
        Run("governed", True, run_settings(base, demo_id, "governed"), demo_id),
    ]
    start_wall_ms = time.time_ns() // 1_000_000
    history: dict[str, int] = {}
    timings: dict[str, float] = {}

    def mark(stage: str) -> None:
        timings[stage] = round(time.monotonic() - started, 2)

    with contextlib.ExitStack() as cleanup:
        try:
            err.print(f"[bold]flyball demo[/bold]: {scenario.description}")
            err.print(f"starting the embedded stack in {data_dir} …")
            stack = EmbeddedStack(base, data_dir, worker=False, sink=False, query=False)
            cleanup.callback(stack.stop)
            stack.start()
            keys = stack.settings.control_keys  # signed by default: the stack's keyring
            for run in runs:
                run.settings = run.settings.model_copy(update={"control_keys": keys})
            mark("stack_ready")
            bootstrap = stack.bootstrap
            err.print(f"  broker {bootstrap}, history {stack.settings.history_dsn}")
            err.print("starting one stream worker per run (fresh topics each) …")
            for run in runs:
                ensure_topics(run.settings, bootstrap)
                run.tap = ControlTap(run.settings, bootstrap, run.name).start()
                cleanup.callback(run.tap.stop)
                run.worker_log = data_dir / f"worker-{run.name}.log"
                run.worker = start_worker(run.settings, bootstrap, run.worker_log)
                cleanup.callback(_stop_worker, run)
            for run in runs:
                wait_worker_ready(run, started)  # the next run's worker starts meanwhile
                if run is runs[0]:
                    err.print(f"  stream worker ready after {run.worker_ready_s:.1f} s")
                mark(f"{run.name}_worker_ready")
                live_run(run, scenario, plan, stack.store, bootstrap, err, cleanup)
                mark(f"{run.name}_done")
            finish_pipeline(runs, err)
            mark("pipeline_stopped")
            history = history_rows(stack.store, start_wall_ms - 1_000)
            mark("history_counted")
        finally:
            with _sigint_ignored():
                cleanup.close()
    mark("stack_stopped")
    report = build_report(runs, plan, scenario, history, out_dir, data_dir, started)
    report["timings_s"] = timings
    write_outputs(report, plan, out_dir, started)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        print_summary(report, Console())
    failed = [k for k, ok in report["checks"].items() if not ok]
    if failed:
        err.print(f"[red]flyball demo: checks failed: {', '.join(failed)}[/red]")
        return 1
    return 0


def live_run(
    run: Run,
    scenario: Scenario,
    plan: DemoPlan,
    store: HistoryStore,
    bootstrap: str,
    err: Console,
    cleanup: contextlib.ExitStack,
) -> None:
    """One run: a history sink, real gateways, the fleet in real time; metrics at the end."""
    sink_conf = SinkConfig(group_id=f"flyball-history-{run.settings.topic_events}")
    run.sink = HistorySink(run.settings, bootstrap, store, sink_conf).start()
    cleanup.callback(run.sink.stop)
    for i in range(scenario.gateways):
        gw = Gateway(run.settings, f"{run.name}-gw-{i}", bootstrap=bootstrap, control=run.enforce)
        cleanup.callback(gw.close)
        run.gateways.append(gw.start())
    if run.enforce:
        for gw in run.gateways:
            gw.wait_caught_up(5.0)
    tag = f"{run.name[0]}{run.tag}-"  # event / request / intent ids unique per run

    def policy(ctx: Any) -> LivePolicy:
        return LivePolicy(ctx, run.gateways, enforce=run.enforce, name=run.name, tap=run.tap,
                          tag=tag)

    engine = LiveEngine(scenario, policy)
    label = "governed  " if run.enforce else "ungoverned"
    with Progress(
        TextColumn(f"[bold]{label}[/bold]"),
        BarColumn(bar_width=15),
        TextColumn("{task.completed:>4.1f}/{task.total:.0f} s"),
        TextColumn("{task.fields[info]}"),
        console=err,
        transient=False,
        refresh_per_second=4,
    ) as progress:
        task = progress.add_task(run.name, total=plan.run_s, info="")
        engine.live.on_progress = RunProgress(progress, task, engine, plan)
        result = engine.run()
    for gw in run.gateways:
        gw.close()
    run.result = result
    metrics = compute(result)
    stats = [gw.stats() for gw in run.gateways]
    received = run.tap.received() if run.tap is not None else []
    delays = sorted(r.received_ms - r.directive.issued_ms for r in received)
    run.live = {
        "gateways": [gw.gateway_id for gw in run.gateways],
        "topics": {
            "events": run.settings.topic_events,
            "control": run.settings.topic_control,
        },
        "enforced": run.enforce,
        "worker_ready_s": run.worker_ready_s,
        "max_lag_ms": round(engine.live.pacer.max_lag_ms, 1),
        "events_emitted": sum(s.events_emitted for s in stats),
        "events_sent": sum(s.events_sent for s in stats),
        "events_dropped": sum(s.events_dropped for s in stats),
        "admitted": sum(s.admitted for s in stats),
        "deferred": sum(s.deferred for s in stats),
        "rejected": sum(s.rejected for s in stats),
        "directives_applied": sum(s.directives_applied for s in stats),
        "directive_messages_received": len(received),
        "heartbeats": run.tap.heartbeats if run.tap is not None else 0,
        "control_delay_ms_p50": _quantile(delays, 0.5),
        "control_delay_ms_max": delays[-1] if delays else None,
    }
    run.metrics = metrics


def _quantile(sorted_values: list[int], q: float) -> float | None:
    if not sorted_values:
        return None
    return float(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))])


def finish_pipeline(runs: list[Run], err: Console) -> None:
    """Let the workers finish the last windows, stop them, drain the sinks into history."""
    err.print("letting the workers close the last windows, draining history …")
    time.sleep(WORKER_SETTLE_S)
    for run in runs:
        if run.worker is not None and run.worker.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                run.worker.send_signal(signal.SIGTERM)  # all at once; waited for below
    for run in runs:
        _stop_worker(run)
    deadline = time.monotonic() + SINK_DRAIN_TIMEOUT_S
    for run in runs:
        if run.sink is None:
            continue
        sent = run.live.get("events_sent", 0)
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            st = run.sink.stats()
            if st.messages != last:
                last, quiet_since = st.messages, time.monotonic()
            elif st.events >= sent and time.monotonic() - quiet_since > 0.6:
                break
            time.sleep(0.1)
        run.sink.stop()
        run.live["history_sink"] = {
            "events": run.sink.stats().events,
            "features": run.sink.stats().features,
            "scores": run.sink.stats().scores,
            "directives": run.sink.stats().directives,
        }


def _stop_worker(run: Run) -> None:
    if run.worker is not None:
        stop_child(run.worker, 6.0)


def history_rows(store: HistoryStore, since_ms: int) -> dict[str, int]:
    """Rows per history table written since ``since_ms`` (distinct, as ``HistoryStore.counts``)."""
    db = store.database
    t = f"fromUnixTimestamp64Milli(toInt64({int(since_ms)}), 'UTC')"
    sql = {
        "events": f"SELECT uniqExact(event_id) FROM {db}.events WHERE ts >= {t}",
        "features": f"SELECT count() FROM {db}.features FINAL WHERE ts >= {t}",
        "scores": f"SELECT count() FROM {db}.scores FINAL WHERE ts >= {t}",
        "directives": f"SELECT count() FROM {db}.directives FINAL WHERE issued >= {t}",
    }
    out = {}
    for table, q in sql.items():
        _, rows = store.query(q)
        out[table] = int(rows[0][0])
    return out


# --- data dir, logging, signals -----------------------------------------------------------------
def prepare_data_dir(settings: Settings, out_dir: Path) -> Path:
    """``--data-dir``/``FLYBALL_DATA_DIR`` when given; else a fresh ``OUT/data`` (recreated)."""
    if "data_dir" in settings.model_fields_set:
        d = settings.data_dir.expanduser().resolve()
        d.mkdir(parents=True, exist_ok=True)
        return d
    d = out_dir / "data"
    if d.exists():
        if not (d / DATA_MARKER).exists() and any(d.iterdir()):
            raise ConfigError(
                f"{d} exists and was not made by flyball demo; pass --data-dir or another --out"
            )
        shutil.rmtree(d)
    d.mkdir(parents=True)
    (d / DATA_MARKER).write_text("made by flyball demo; recreated by the next run\n")
    return d


@contextlib.contextmanager
def _demo_logging(console: Console, log_path: Path) -> Iterator[None]:
    """While the demo runs: warnings of the components to ``log_path`` (the console shows the
    progress), errors also to the console. Handlers are removed afterwards."""
    root = logging.getLogger()
    file_handler = logging.FileHandler(log_path)
    file_handler.setLevel(logging.WARNING)
    file_handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    console_handler = RichHandler(console=console, show_path=False, show_time=False)
    console_handler.setLevel(logging.ERROR)
    level = root.level
    root.addHandler(file_handler)
    root.addHandler(console_handler)
    if level == logging.NOTSET or level > logging.WARNING:
        root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(file_handler)
        root.removeHandler(console_handler)
        root.setLevel(level)
        file_handler.close()


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Cleanup runs to the end even when Ctrl-C is pressed again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# --- report -------------------------------------------------------------------------------------
def build_report(
    runs: list[Run],
    plan: DemoPlan,
    scenario: Scenario,
    history: dict[str, int],
    out_dir: Path,
    data_dir: Path,
    started: float,
) -> dict[str, Any]:
    by = {r.name: r for r in runs}
    u, g = by["ungoverned"], by["governed"]
    assert u.metrics is not None and g.metrics is not None
    for r in runs:
        assert r.metrics is not None
        r.metrics["live"] = r.live
    issued = {r.name: int(r.metrics["directive_messages"]) for r in runs if r.metrics}
    ug, gg = u.metrics["goodput_ratio"] or 0.0, g.metrics["goodput_ratio"] or 0.0
    checks = {
        "governed_goodput_above_ungoverned": gg > ug,
        "directive_issued": issued.get("governed", 0) >= 1,
        "history_in_all_tables": all(history.get(t, 0) > 0 for t in HISTORY_TABLES),
    }
    return {
        "flyball": __version__,
        "scenario": {**plan.as_dict(), "name": scenario.name, "description": scenario.description,
                     "seed": scenario.seed, "gateways": scenario.gateways},
        "ungoverned": u.metrics,
        "governed": g.metrics,
        "directives_issued": sum(issued.values()),
        "directives_issued_by_run": issued,
        "history_rows": {t: history.get(t, 0) for t in HISTORY_TABLES},
        "checks": checks,
        "wall_s": round(time.monotonic() - started, 1),
        "out_dir": str(out_dir),
        "data_dir": str(data_dir),
        "report": str(out_dir / REPORT_FILE),
        "plot": str(out_dir / PLOT_FILE),
    }


def write_outputs(report: dict[str, Any], plan: DemoPlan, out_dir: Path, started: float) -> None:
    """The PNG timeline, then the JSON report (with the wall time including the plot)."""
    plot_timeline(report, plan, out_dir / PLOT_FILE)
    report["wall_s"] = round(time.monotonic() - started, 1)
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")


def plot_timeline(report: dict[str, Any], plan: DemoPlan, path: Path) -> Path:
    """PNG: intents completed in time, attempts and directives per second, both runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"ungoverned": "#d62728", "governed": "#1f77b4"}
    panels = (
        ("goodput", "intents completed\nin time / s"),
        ("attempts", "attempts / s"),
        ("directives", "directive\nmessages / s"),
    )
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 7.5), sharex=True)
    for ax, (key, label) in zip(axes, panels, strict=True):
        for name in ("governed", "ungoverned"):
            m = report[name]
            tl = m["timeline"]
            ratio = m["goodput_ratio"] or 0.0
            if key == "directives":
                width = 0.4
                off = -width / 2 if name == "ungoverned" else width / 2
                ax.bar([t + off for t in tl["t_s"]], tl[key], width=width, color=colors[name],
                       alpha=0.8, label=name)
            else:
                ax.plot(tl["t_s"], tl[key], color=colors[name], linewidth=1.6,
                        linestyle="--" if name == "ungoverned" else "-",
                        label=f"{name} (goodput {ratio:.0%})")
        ax.axvspan(plan.fault_start_s, plan.fault_end_s, color="orange", alpha=0.15,
                   label="fault (service ×4 slower)")
        ax.set_ylabel(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")
    axes[-1].set_xlabel("seconds of the run (real time)")
    fig.suptitle(f"flyball demo: {report['scenario']['description']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _f(v: Any, spec: str) -> str:
    return "—" if v is None else spec.format(v)


def print_summary(report: dict[str, Any], console: Console) -> None:
    u, g = report["ungoverned"], report["governed"]
    table = Table(title=f"{report['scenario']['name']}: ungoverned vs governed (live)")
    table.add_column("metric", style="bold")
    table.add_column("ungoverned", justify="right")
    table.add_column("governed", justify="right")
    rows: list[tuple[str, str, str]] = [
        ("goodput ratio", _f(u["goodput_ratio"], "{:.3f}"), _f(g["goodput_ratio"], "{:.3f}")),
        ("completed / offered intents", f"{u['completed_intents']}/{u['offered_intents']}",
         f"{g['completed_intents']}/{g['offered_intents']}"),
        ("attempts / intent", _f(u["attempts_per_intent"], "{:.2f}"),
         _f(g["attempts_per_intent"], "{:.2f}")),
        ("waste fraction", _f(u["waste_fraction"], "{:.3f}"), _f(g["waste_fraction"], "{:.3f}")),
        ("recovery s", _f(u["recovery_s"], "{:.1f}"), _f(g["recovery_s"], "{:.1f}")),
        ("latency p50 / p99 ms",
         f"{_f(u['latency_p50_ms'], '{:.0f}')} / {_f(u['latency_p99_ms'], '{:.0f}')}",
         f"{_f(g['latency_p50_ms'], '{:.0f}')} / {_f(g['latency_p99_ms'], '{:.0f}')}"),
        ("directive messages (published)", str(u["directive_messages"]),
         str(g["directive_messages"])),
        ("deferred / rejected at gateways",
         f"{u['live']['deferred']} / {u['live']['rejected']}",
         f"{g['live']['deferred']} / {g['live']['rejected']}"),
        ("events shipped", str(u["live"]["events_sent"]), str(g["live"]["events_sent"])),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    h = report["history_rows"]
    console.print("history (ClickHouse): " + ", ".join(f"{t} {h[t]}" for t in HISTORY_TABLES))
    console.print(f"  query it: flyball sql --data-dir {report['data_dir']} \"SELECT …\"")
    console.print(f"report {report['report']}   timeline {report['plot']}")
    console.print(f"wall time {report['wall_s']:.0f} s")
