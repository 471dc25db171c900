"""``flyball bench {pipeline,loop,gateway,core,keys}``: benchmarks that print JSON."""

from __future__ import annotations

from flyball.errors import ConfigError
from flyball.settings import Settings


def run_bench(which: str, settings: Settings, as_json: bool) -> int:
    if which == "pipeline":
        from streams.bench import run_pipeline_bench

        return int(run_pipeline_bench(settings, as_json))
    if which == "loop":
        from streams.bench_loop import run_loop_bench

        return int(run_loop_bench(settings, as_json))
    if which == "gateway":
        import json

        from gateway.bench import run_gateway_bench

        result = run_gateway_bench()
        if not as_json:
            print("flyball bench gateway (per-call costs; one run, one machine)")
        print(json.dumps(result, indent=None if as_json else 2))
        return 0
    if which == "core":
        import json

        from detectors.bench import run_bench as run_core

        core = run_core()
        if not as_json:
            print("flyball bench core (the functional core alone; one run, one machine)")
        print(json.dumps(core, indent=None if as_json else 2))
        return 0
    if which == "keys":
        import json

        from detectors.bench_keys import run_keys_bench

        keys = run_keys_bench()
        if not as_json:
            print("flyball bench keys (memory per tracked key and under a 20,000-name flood)")
        print(json.dumps(keys, indent=None if as_json else 2))
        return 0
    raise ConfigError(f"unknown benchmark {which!r} (pipeline, loop, gateway, core or keys)")
