"""``flyball sim``: run a scenario under one gateway policy, or compare every policy.

One run prints its metrics as JSON (the per-second timeline only with ``--json``). ``--compare``
runs every policy on the same seed and prints a side-by-side table (or a JSON list with
``--json``); ``--plot out.png`` writes the timelines; ``--dump-scenario PATH`` writes the scenario
as TOML (useful for ``sweep:S:i`` references, see ``sim.sweep``). Exit codes: 0 ok, 2 bad
scenario/policy.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from schemas import jsoncodec
from sim.errors import ScenarioError, SimError
from sim.report import plot_timelines, print_comparison
from sim.runner import available_policies, run_metrics
from sim.scenario import load_scenario

DEFAULT_POLICY = "governor"


def dump_scenario_toml(ref: str, path: str) -> int:
    """Write scenario ``ref`` as TOML to ``path`` (``-`` = stdout): a ``sweep:S:i`` reference is
    generated and written out; a file or shipped scenario is copied as it is."""
    from sim.scenario import resolve_scenario_path
    from sim.sweep import case_toml, generate_case, parse_ref

    try:
        parsed = parse_ref(ref)
        if parsed is not None:
            text = case_toml(generate_case(*parsed))
        else:
            load_scenario(ref)  # validate first
            text = resolve_scenario_path(ref).read_text(encoding="utf-8")
    except (ScenarioError, SimError) as e:
        print(f"flyball sim: {e}", file=sys.stderr)
        return 2
    if path == "-":
        sys.stdout.write(text)
        return 0
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as e:
        print(f"flyball sim: cannot write {path}: {e}", file=sys.stderr)
        return 2
    print(f"scenario {ref} written to {path}", file=sys.stderr)
    return 0


def run_sim(scenario: str, policy: str | None, compare: bool, as_json: bool, plot: str | None,
            seed: int | None, dump_scenario: str | None = None) -> int:
    if dump_scenario is not None:
        return dump_scenario_toml(scenario, dump_scenario)
    try:
        sc = load_scenario(scenario)
        if compare:
            names, missing = available_policies()
            for name, why in missing.items():
                print(f"note: policy {name!r} skipped: {why}", file=sys.stderr)
        else:
            names = [policy or DEFAULT_POLICY]
        results: list[dict[str, Any]] = [run_metrics(sc, name, seed) for name in names]
    except (ScenarioError, SimError) as e:
        print(f"flyball sim: {e}", file=sys.stderr)
        return 2
    if compare and not as_json:
        seed_used = results[0]["seed"] if results else sc.seed
        print_comparison(results, f"{sc.name} (seed {seed_used}): {sc.description}")
    elif compare:
        sys.stdout.write(jsoncodec.dumps(results).decode() + "\n")
    else:
        out = results[0] if as_json else {k: v for k, v in results[0].items() if k != "timeline"}
        sys.stdout.write(jsoncodec.dumps(out).decode() + "\n")
    if plot:
        fw = sc.fault_window_ms()
        path = plot_timelines(
            results, plot, f"{sc.name}: {sc.description}",
            None if fw is None else (fw[0] / 1000.0, fw[1] / 1000.0),
        )
        print(f"plot written to {path}", file=sys.stderr)
    return 0
