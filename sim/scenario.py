"""Scenarios: TOML files describing services, tenants, faults and demand (see scenarios/README.md).

``load_scenario`` accepts a path or the name of a shipped scenario; every key is validated, and an
error names the offending key by its path (``tenants[1].retry.jitter``). Times in the file are
seconds (``*_s``) or milliseconds (``*_ms``) as named; the parsed objects hold integer ms.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sim.errors import ScenarioError

SCENARIO_DIR: Final = Path(__file__).resolve().parent / "scenarios"

FAULT_KINDS: Final = ("error", "slowdown", "capacity")
BACKOFFS: Final = ("none", "fixed", "exponential")
JITTERS: Final = ("none", "full", "equal", "decorrelated")
ARRIVALS: Final = ("poisson", "azure-conv", "azure-code")
TOKEN_SOURCES: Final = ("none", "azure-conv", "azure-code")


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A fault on one service during ``[start_ms, end_ms)``.

    - ``error``: ``fraction`` of requests started fail fast (after the service's ``error_ms``).
    - ``slowdown``: service times are multiplied by ``factor``.
    - ``capacity``: usable slots drop to ``fraction`` of the configured slots (at least 1).
    """

    kind: str
    start_ms: int
    end_ms: int
    fraction: float = 1.0
    factor: float = 1.0


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    slots: int
    queue_limit: int
    median_ms: float
    sigma: float
    error_ms: int
    ms_per_token_in: float
    ms_per_token_out: float
    faults: tuple[FaultSpec, ...]

    def mean_service_ms(self, mean_tokens_in: float = 0.0, mean_tokens_out: float = 0.0) -> float:
        """Mean service time without faults (lognormal mean plus the token terms)."""
        import math

        return (
            self.median_ms * math.exp(self.sigma**2 / 2.0)
            + self.ms_per_token_in * mean_tokens_in
            + self.ms_per_token_out * mean_tokens_out
        )


@dataclass(frozen=True, slots=True)
class RetrySpec:
    """A tenant's client retry policy (see ``sim.backoff``)."""

    max_attempts: int
    backoff: str
    base_ms: int
    cap_ms: int
    jitter: str
    on_error: bool
    on_timeout: bool
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class PhaseSpec:
    """During ``[start_ms, end_ms)`` the tenant's rate is multiplied by ``rate_x`` (ramping linearly
    to ``ramp_to_x`` when given) and, when given, its fan-out becomes ``fanout``."""

    start_ms: int
    end_ms: int
    rate_x: float
    ramp_to_x: float | None
    fanout: tuple[int, ...] | None


@dataclass(frozen=True, slots=True)
class TenantSpec:
    name: str
    agents: int
    priority: int
    child_priority_step: int
    arrivals: str
    rate_per_s: float
    trace_speedup: float
    trace_offset_s: float
    endpoints: tuple[str, ...]
    fanout: tuple[int, ...]
    deadline_ms: int
    tokens: str
    retry: RetrySpec
    phases: tuple[PhaseSpec, ...]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    seed: int
    duration_ms: int
    organic: bool
    gateways: int
    control_tick_ms: int
    control_delay_ms: int
    high_priority_max: int
    services: tuple[ServiceSpec, ...]
    tenants: tuple[TenantSpec, ...]
    policy_params: dict[str, dict[str, Any]]

    def service(self, name: str) -> ServiceSpec:
        for s in self.services:
            if s.name == name:
                return s
        raise ScenarioError(f"no service named {name!r}")

    def fault_window_ms(self) -> tuple[int, int] | None:
        """(first fault start, last fault end) over all services, or None without faults."""
        faults = [f for s in self.services for f in s.faults]
        if not faults:
            return None
        return min(f.start_ms for f in faults), max(f.end_ms for f in faults)

    def max_drain_ms(self) -> int:
        """How long after the last arrival an intent can still be alive."""
        return max(t.deadline_ms + t.retry.timeout_ms for t in self.tenants)


_MISSING: Final = object()


class _Table:
    """Typed, path-aware access to one TOML table; ``close()`` rejects unknown keys."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ScenarioError(f"{where or 'scenario'}: must be a table")
        self.data: dict[str, Any] = data
        self.where = where
        self.used: set[str] = set()

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _get(self, key: str, default: Any) -> Any:
        self.used.add(key)
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise ScenarioError(f"{self._path(key)}: required key is missing")
        return default

    def int_(self, key: str, default: Any = _MISSING, lo: int | None = None,
             hi: int | None = None) -> int:
        v = self._get(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ScenarioError(f"{self._path(key)}: must be an integer, got {v!r}")
        self._bounds(key, v, lo, hi)
        return v

    def float_(self, key: str, default: Any = _MISSING, lo: float | None = None,
               hi: float | None = None) -> float:
        v = self._get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ScenarioError(f"{self._path(key)}: must be a number, got {v!r}")
        self._bounds(key, v, lo, hi)
        return float(v)

    def opt_float(self, key: str, lo: float | None = None) -> float | None:
        if key not in self.data:
            self.used.add(key)
            return None
        return self.float_(key, lo=lo)

    def bool_(self, key: str, default: Any = _MISSING) -> bool:
        v = self._get(key, default)
        if not isinstance(v, bool):
            raise ScenarioError(f"{self._path(key)}: must be true or false, got {v!r}")
        return v

    def str_(self, key: str, default: Any = _MISSING, choices: tuple[str, ...] = ()) -> str:
        v = self._get(key, default)
        if not isinstance(v, str):
            raise ScenarioError(f"{self._path(key)}: must be a string, got {v!r}")
        if choices and v not in choices:
            raise ScenarioError(f"{self._path(key)}: must be one of {list(choices)}, got {v!r}")
        return v

    def ints(self, key: str, default: Any = _MISSING, lo: int = 0) -> tuple[int, ...]:
        v = self._get(key, default)
        if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, int) for x in v):
            raise ScenarioError(f"{self._path(key)}: must be a list of integers, got {v!r}")
        for x in v:
            self._bounds(key, x, lo, None)
        return tuple(v)

    def strs(self, key: str, default: Any = _MISSING) -> tuple[str, ...]:
        v = self._get(key, default)
        if not isinstance(v, list) or not v or any(not isinstance(x, str) for x in v):
            raise ScenarioError(
                f"{self._path(key)}: must be a non-empty list of strings, got {v!r}"
            )
        return tuple(v)

    def tables(self, key: str, required: bool = False) -> list[_Table]:
        v = self._get(key, _MISSING if required else [])
        if not isinstance(v, list):
            raise ScenarioError(f"{self._path(key)}: must be an array of tables ([[{key}]])")
        return [_Table(x, f"{self._path(key)}[{i}]") for i, x in enumerate(v)]

    def table(self, key: str) -> _Table:
        return _Table(self._get(key, {}), self._path(key))

    def _bounds(self, key: str, v: float, lo: float | None, hi: float | None) -> None:
        if lo is not None and v < lo:
            raise ScenarioError(f"{self._path(key)}: must be >= {lo}, got {v!r}")
        if hi is not None and v > hi:
            raise ScenarioError(f"{self._path(key)}: must be <= {hi}, got {v!r}")

    def close(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ScenarioError(f"{self._path(unknown[0])}: unknown key")


def _ms(seconds: float) -> int:
    return round(seconds * 1000.0)


def _fault(t: _Table) -> FaultSpec:
    kind = t.str_("kind", choices=FAULT_KINDS)
    start_ms = _ms(t.float_("start_s", lo=0.0))
    end_ms = _ms(t.float_("end_s", lo=0.0))
    if end_ms <= start_ms:
        raise ScenarioError(f"{t.where}.end_s: must be after start_s")
    fraction = t.float_("fraction", 1.0, lo=0.0, hi=1.0)
    factor = t.float_("factor", 1.0, lo=1.0)
    t.close()
    return FaultSpec(kind, start_ms, end_ms, fraction, factor)


def _service(t: _Table) -> ServiceSpec:
    spec = ServiceSpec(
        name=t.str_("name"),
        slots=t.int_("slots", lo=1),
        queue_limit=t.int_("queue_limit", 100_000, lo=0),
        median_ms=t.float_("service_ms_median", lo=1.0),
        sigma=t.float_("service_ms_sigma", 0.5, lo=0.0, hi=3.0),
        error_ms=t.int_("error_ms", 5, lo=0),
        ms_per_token_in=t.float_("ms_per_token_in", 0.0, lo=0.0),
        ms_per_token_out=t.float_("ms_per_token_out", 0.0, lo=0.0),
        faults=tuple(_fault(f) for f in t.tables("faults")),
    )
    t.close()
    return spec


def _retry(t: _Table) -> RetrySpec:
    spec = RetrySpec(
        max_attempts=t.int_("max_attempts", 3, lo=1, hi=100),
        backoff=t.str_("backoff", "exponential", choices=BACKOFFS),
        base_ms=t.int_("base_ms", 100, lo=0),
        cap_ms=t.int_("cap_ms", 10_000, lo=0),
        jitter=t.str_("jitter", "full", choices=JITTERS),
        on_error=t.bool_("on_error", True),
        on_timeout=t.bool_("on_timeout", True),
        timeout_ms=t.int_("timeout_ms", 5_000, lo=1),
    )
    t.close()
    return spec


def _phase(t: _Table) -> PhaseSpec:
    start_ms = _ms(t.float_("start_s", lo=0.0))
    end_ms = _ms(t.float_("end_s", lo=0.0))
    if end_ms <= start_ms:
        raise ScenarioError(f"{t.where}.end_s: must be after start_s")
    rate_x = t.float_("rate_x", 1.0, lo=0.0)
    ramp_to_x = t.opt_float("ramp_to_x", lo=0.0)
    fanout = t.ints("fanout", None, lo=0) if "fanout" in t.data else None
    t.used.add("fanout")
    t.close()
    return PhaseSpec(start_ms, end_ms, rate_x, ramp_to_x, fanout)


def _tenant(t: _Table, services: set[str]) -> TenantSpec:
    name = t.str_("name")
    arrivals = t.str_("arrivals", "poisson", choices=ARRIVALS)
    endpoints = t.strs("endpoints")
    for e in endpoints:
        if e not in services:
            raise ScenarioError(f"{t.where}.endpoints: no service named {e!r}")
    spec = TenantSpec(
        name=name,
        agents=t.int_("agents", 100, lo=1),
        priority=t.int_("priority", 5, lo=0, hi=9),
        child_priority_step=t.int_("child_priority_step", 0, lo=0, hi=9),
        arrivals=arrivals,
        rate_per_s=t.float_("rate_per_s", 0.0 if arrivals != "poisson" else _MISSING, lo=0.0),
        trace_speedup=t.float_("trace_speedup", 1.0, lo=0.001),
        trace_offset_s=t.float_("trace_offset_s", 0.0, lo=0.0),
        endpoints=endpoints,
        fanout=t.ints("fanout", [], lo=0),
        deadline_ms=t.int_("deadline_ms", 30_000, lo=1),
        tokens=t.str_("tokens", "azure-conv", choices=TOKEN_SOURCES),
        retry=_retry(t.table("retry")),
        phases=tuple(_phase(p) for p in t.tables("phases")),
    )
    t.close()
    return spec


def parse_scenario(data: dict[str, Any], name: str = "") -> Scenario:
    """Validate a decoded TOML document into a ``Scenario``."""
    t = _Table(data, "")
    services = tuple(_service(s) for s in t.tables("services", required=True))
    if not services:
        raise ScenarioError("services: at least one [[services]] table is required")
    names = [s.name for s in services]
    if len(set(names)) != len(names):
        raise ScenarioError(f"services: duplicate service names in {names}")
    tenants = tuple(_tenant(x, set(names)) for x in t.tables("tenants", required=True))
    if not tenants:
        raise ScenarioError("tenants: at least one [[tenants]] table is required")
    tnames = [x.name for x in tenants]
    if len(set(tnames)) != len(tnames):
        raise ScenarioError(f"tenants: duplicate tenant names in {tnames}")
    policies = t.table("policies")
    policy_params: dict[str, dict[str, Any]] = {}
    for pname, params in policies.data.items():
        policies.used.add(pname)
        if not isinstance(params, dict):
            raise ScenarioError(f"policies.{pname}: must be a table")
        policy_params[pname] = dict(params)
    sc = Scenario(
        name=t.str_("name", name or "scenario"),
        description=t.str_("description", ""),
        seed=t.int_("seed", 1, lo=0),
        duration_ms=_ms(t.float_("duration_s", lo=1.0)),
        organic=t.bool_("organic", False),
        gateways=t.int_("gateways", 2, lo=1, hi=1000),
        control_tick_ms=t.int_("control_tick_ms", 100, lo=1),
        control_delay_ms=t.int_("control_delay_ms", 200, lo=0),
        high_priority_max=t.int_("high_priority_max", 0, lo=0, hi=9),
        services=services,
        tenants=tenants,
        policy_params=policy_params,
    )
    t.close()
    return sc


def shipped_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``sim/scenarios``."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def resolve_scenario_path(ref: str) -> Path:
    p = Path(ref)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ScenarioError(f"scenario file {str(p)!r} does not exist")
        return p
    shipped = SCENARIO_DIR / f"{ref}.toml"
    if shipped.is_file():
        return shipped
    known = ", ".join(shipped_scenarios())
    raise ScenarioError(f"scenario {ref!r} is neither a file nor a shipped scenario ({known})")


def load_scenario(ref: str) -> Scenario:
    """Load a scenario by path, shipped name, or ``sweep:S:i`` (scenario i of the randomized
    sweep with seed S, regenerated by ``sim.sweep``)."""
    if ref.startswith("sweep:"):
        from sim.sweep import load_sweep_ref

        return load_sweep_ref(ref)
    path = resolve_scenario_path(ref)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}") from e
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read: {e}") from e
    try:
        return parse_scenario(data, name=path.stem)
    except ScenarioError as e:
        raise ScenarioError(f"{path.name}: {e}") from None
