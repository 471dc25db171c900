"""``flyball bench {pipeline,loop,gateway,core,keys}``: benchmarks that print JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flyball.errors import ConfigError
from flyball.settings import Settings


def _gateway() -> dict[str, Any]:
    from gateway.bench import run_gateway_bench

    return run_gateway_bench()


def _core() -> dict[str, Any]:
    from detectors.bench import run_bench as run_core

    return run_core()


def _keys() -> dict[str, Any]:
    from detectors.bench_keys import run_keys_bench

    return run_keys_bench()


# in-process benchmarks: name -> (title, run)
_IN_PROCESS: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "gateway": ("per-call costs; one run, one machine", _gateway),
    "core": ("the functional core alone; one run, one machine", _core),
    "keys": ("memory per tracked key and under a 20,000-name flood", _keys),
}


def run_bench(which: str, settings: Settings, as_json: bool) -> int:
    if which == "pipeline":
        from streams.bench import run_pipeline_bench

        return int(run_pipeline_bench(settings, as_json))
    if which == "loop":
        from streams.bench_loop import run_loop_bench

        return int(run_loop_bench(settings, as_json))
    if which in _IN_PROCESS:
        title, run = _IN_PROCESS[which]
        result = run()
        if not as_json:
            print(f"flyball bench {which} ({title})")
        print(json.dumps(result, indent=None if as_json else 2))
        return 0
    raise ConfigError(f"unknown benchmark {which!r} (pipeline, loop, gateway, core or keys)")
