"""``flyball``: the command line. Each subcommand is a thin shell over a module that does the work.

Settings come from flags, ``FLYBALL_*`` environment variables and ``flyball.toml`` (strongest
first); ``flyball --help`` lists every setting with its variable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flyball import __version__
from flyball.errors import FlyballError
from flyball.settings import Settings, describe_settings, load_settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _settings_epilog() -> str:
    rows = describe_settings()
    width = max(len(env) for env, _, _ in rows)
    lines = ["settings (flag > environment > flyball.toml; secrets are never printed):"]
    lines += [f"  {env:<{width}}  [{key}] {desc}" for env, key, desc in rows]
    return "\n".join(lines)


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", type=Path, help="directory for the embedded stack [env: FLYBALL_DATA_DIR]"
    )


def _cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from infra.up import run_up

    return run_up(settings, args.data_dir)


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.worker import run_worker

    return run_worker(settings, sink=args.sink)


def _cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    from infra.cli_sql import run_sql

    return run_sql(settings, args.query, args.format)


def _cmd_detect(args: argparse.Namespace, settings: Settings) -> int:
    from detectors.cli_detect import run_detect

    return run_detect(args.input, args.output)


def _cmd_sim(args: argparse.Namespace, settings: Settings) -> int:
    if args.sweep is not None:
        conflicts = [flag for flag, given in (
            ("--scenario", args.scenario is not None), ("--policy", args.policy is not None),
            ("--plot", args.plot is not None), ("--dump-scenario", args.dump_scenario is not None),
        ) if given]
        if conflicts:
            print(f"flyball sim: --sweep runs every policy on drawn scenarios; it cannot be "
                  f"combined with {', '.join(conflicts)}", file=sys.stderr)
            return 2
        from sim.sweep import run_sweep_cli

        return run_sweep_cli(args.sweep, args.seed, args.jobs, args.json)
    if args.scenario is None:
        print("flyball sim: give --scenario NAME|PATH|sweep:S:i (one scenario) or --sweep N "
              "(N randomized scenarios)", file=sys.stderr)
        return 2
    from sim.cli_sim import run_sim

    return run_sim(args.scenario, args.policy, args.compare, args.json, args.plot, args.seed,
                   dump_scenario=args.dump_scenario)


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from sim.demo import run_demo

    return run_demo(settings, as_json=args.json, out_dir=args.out, duration_s=args.duration_s)


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from flyball.replay import run_replay

    return run_replay(
        settings, args.from_, args.to, args.endpoint, args.governor_config, args.compare, args.json
    )


def _cmd_keygen(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.signing import (
        ControlKey,
        Keyring,
        KeyringError,
        generate_key,
        load_keyring,
        write_keyring,
    )

    try:
        key = generate_key(args.kid, args.alg)
        keys: tuple[ControlKey, ...] = (key,)
        if args.add_to is not None:  # rotation: the new key signs, the old ones still verify
            old = load_keyring(args.add_to)
            keys = (key, *old.keys.values())
        ring = Keyring(keys, key.kid)
    except KeyringError as e:
        print(f"flyball keygen: {e}", file=sys.stderr)
        return 2
    out = args.out if args.add_to is None else args.add_to
    write_keyring(out, ring)
    public = out.with_name(out.stem + ".public.json")
    write_keyring(public, ring, public_only=True)
    print(f"keyring {out} (signs with {key.kid}, {key.alg}: workers' control_keys)")
    what = "gateways' control_keys" if args.alg == "ed25519" else "a shared secret: keep it private"
    print(f"public  {public} ({what})")
    return 0


def _cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from flyball.bench import run_bench

    return run_bench(args.which, settings, as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flyball",
        description=(
            "Flyball governs AI-agent traffic: gateways publish request metadata to Kafka, "
            "stream workers score its shape and publish directives that gateways enforce, "
            "and ClickHouse keeps the history."
        ),
        epilog=_settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"flyball {__version__}")
    parser.add_argument(
        "--config", type=Path, help="settings file (default ./flyball.toml) [env: FLYBALL_CONFIG]"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "up", help="run the embedded stack in the foreground (broker, worker, history)"
    )
    _add_data_dir(p)
    p.set_defaults(handler=_cmd_up)

    p = sub.add_parser("worker", help="run a stream worker against the configured Kafka/ClickHouse")
    p.add_argument(
        "--no-sink",
        dest="sink",
        action="store_false",
        help="do not write history from this worker (another process does)",
    )
    p.set_defaults(handler=_cmd_worker)

    p = sub.add_parser(
        "keygen",
        help="make a keyring that signs directives (workers) and its public half (gateways)",
        description="Write a keyring (JSON, mode 0600) whose new key signs control-topic "
        "directives, and beside it NAME.public.json for gateways. Ed25519 (default): gateways "
        "can verify but never sign. Rotation: --add-to an existing keyring, give gateways the "
        "new public keyring first, then workers; drop the old key an hour later (the longest "
        "directive lifetime).",
    )
    p.add_argument("--kid", required=True, help="key id, e.g. 2026-12 (1-64 characters)")
    p.add_argument("--alg", choices=("ed25519", "hmac-sha256"), default="ed25519")
    p.add_argument("--out", type=Path, default=Path("control-keys.json"), help="keyring path")
    p.add_argument("--add-to", type=Path, help="add the key to this keyring (rotation)")
    p.set_defaults(handler=_cmd_keygen)

    p = sub.add_parser("sql", help="query the history (goes through `flyball up` when it runs)")
    p.add_argument("query", help='SQL, e.g. "SELECT count() FROM flyball.events"')
    p.add_argument("--format", choices=("table", "json"), default="table")
    _add_data_dir(p)
    p.set_defaults(handler=_cmd_sql)

    p = sub.add_parser("detect", help="score a series: timestamp,value CSV -> with anomaly_score")
    p.add_argument("--input", required=True, help="CSV with columns timestamp,value")
    p.add_argument("--output", required=True, help="CSV written with timestamp,value,anomaly_score")
    p.set_defaults(handler=_cmd_detect)

    p = sub.add_parser("sim", help="simulate an agent fleet under a gateway policy (virtual time)")
    p.add_argument(
        "--scenario", default=None,
        help="scenario name (e.g. retry-storm), TOML path, or sweep:S:i (scenario i of sweep S)",
    )
    p.add_argument("--policy", default=None, help="gateway policy (default: governor)")
    p.add_argument("--compare", action="store_true", help="run every policy on the same seed")
    p.add_argument("--json", action="store_true", help="print JSON metrics")
    p.add_argument("--plot", default=None, help="write a PNG timeline to this path")
    p.add_argument(
        "--seed", type=int, default=None,
        help="override the scenario's seed; with --sweep: the sweep seed S (default 1)",
    )
    p.add_argument(
        "--dump-scenario", default=None, metavar="PATH",
        help="write the scenario as TOML to PATH ('-' = stdout) and exit (e.g. for sweep:S:i)",
    )
    p.add_argument(
        "--sweep", type=int, default=None, metavar="N",
        help="draw N random scenarios (seed --seed) and run every policy on each; summarize",
    )
    p.add_argument(
        "--jobs", type=int, default=None, metavar="J",
        help="--sweep: worker processes (default: the number of CPUs)",
    )
    p.set_defaults(handler=_cmd_sim)

    p = sub.add_parser("demo", help="live demo on the embedded stack: ungoverned vs governed")
    p.add_argument("--json", action="store_true", help="print the JSON report")
    p.add_argument("--out", type=Path, default=Path("flyball-demo"), help="report/plot directory")
    p.add_argument("--duration-s", type=int, default=None, help="seconds per run (default 40)")
    _add_data_dir(p)
    p.set_defaults(handler=_cmd_demo)

    p = sub.add_parser(
        "replay", help="re-run the governor over a time range of the history (what-if)"
    )
    p.add_argument("--from", dest="from_", required=True, help="start: epoch ms or ISO-8601 (UTC)")
    p.add_argument("--to", required=True, help="end (exclusive): epoch ms or ISO-8601 (UTC)")
    p.add_argument("--endpoint", default=None, help="only this endpoint's events")
    p.add_argument(
        "--governor-config", type=Path, default=None,
        help="TOML of governor settings to try [env: FLYBALL_GOVERNOR_CONFIG]",
    )
    p.add_argument("--compare", action="store_true", help="match episodes against live history")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    _add_data_dir(p)
    p.set_defaults(handler=_cmd_replay)

    p = sub.add_parser(
        "bench",
        help="benchmarks with JSON output (ratios within one run)",
        description="pipeline: worker end to end vs a raw consumer and a naive Faust agent; "
        "loop: retry-storm onset to directive at a gateway; gateway: SDK per-call costs; "
        "core: the detectors alone, and one governor per worker vs one per partition; "
        "keys: memory per tracked key, and the bound a flood of random names meets",
    )
    p.add_argument("which", choices=("pipeline", "loop", "gateway", "core", "keys"))
    p.add_argument("--json", action="store_true", help="print JSON only")
    p.set_defaults(handler=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config is not None:
        import os

        os.environ["FLYBALL_CONFIG"] = str(args.config)
    overrides: dict[str, Any] = {"data_dir": getattr(args, "data_dir", None)}
    try:
        settings = load_settings(**overrides)
        handler: Handler = args.handler
        return handler(args, settings)
    except FlyballError as exc:
        print(f"flyball: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
