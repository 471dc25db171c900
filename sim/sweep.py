"""Randomized scenario sweep: ``flyball sim --sweep N [--seed S] [--json] [--jobs J]``.

Nobody can tune a governor to six shipped files. The sweep draws N scenarios from a documented
distribution (``sim/scenarios/README.md``, "Randomized sweep"), runs the governor and every
baseline policy on each one with the same seed, and summarizes how the governor fared.

- Scenario ``i`` of sweep seed ``S`` is drawn from ``default_rng(SeedSequence([S, i]))`` alone, so
  it can be regenerated on its own: ``flyball sim --scenario sweep:S:i --compare``
  (``load_scenario`` accepts the reference) or written as TOML with ``--dump-scenario PATH``.
- Each scenario is built as a plain dict in the shape of a scenario TOML and validated by
  ``sim.scenario.parse_scenario``, exactly like a file.
- Capacity per endpoint is slots × 1000 ÷ ``ServiceSpec.mean_service_ms`` with the tenants' mean
  tokens weighted by their demand there (the token-bucket baseline's ``nominal_capacity_per_s``
  weighs tenants equally; it is recorded too). Demand is intents/s × requests per intent on that
  endpoint (fan-out children included), per second, smoothed over ``DEMAND_SMOOTH_S`` seconds.
  Load = demand ÷ capacity (the largest over endpoints).
- Benign scenarios (``organic = true``): no fault (a permanent change does not count as one), and
  either peak load below ``BENIGN_LOAD`` of the effective capacity throughout, or every tenant's
  clients back off with jitter (``backoff != "none"`` and ``jitter != "none"``), whatever the load.

The module has three parts: the generator (``generate_case``), the runner (``run_sweep``, a process
pool of (scenario, policy) runs) and the summary (``summarize``, ``print_report``).
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt
import tomli_w

from sim.errors import ScenarioError
from sim.scenario import Scenario, TenantSpec, parse_scenario
from sim.trace import load_trace, mean_tokens

T = TypeVar("T")
F64 = npt.NDArray[np.float64]

# --- the distribution (every range is inclusive; the README's "Randomized sweep" mirrors these) --

DURATION_S: Final = (60, 150)  # seconds of arrivals
DOUBLE_FAULT_DURATION_S: Final = (100, 150)  # runs with two faults a minute apart are longer
GATEWAYS: Final = (1, 4)
TENANTS: Final = (1, 4)
AGENTS: Final = (20, 1000)  # per tenant, log-uniform
CAPACITY_PER_S: Final = (20.0, 150.0)  # target nominal capacity of the "llm" endpoint, log-uniform
LOAD_X: Final = (0.3, 1.5)  # base demand ÷ capacity, uniform
PEAK_LOAD_CAP: Final = 3.0  # a spike is clipped so that the peak stays near this (min ×1.5)

TOPOLOGIES: Final = ("single", "tools")
TOPOLOGY_WEIGHTS: Final = (0.6, 0.4)
TAILS: Final = ("light", "heavy", "tokens")  # the llm's service-time model
MEDIAN_MS: Final = (100.0, 800.0)  # llm median (light, heavy), log-uniform
TOKEN_MEDIAN_MS: Final = (50.0, 300.0)  # llm base median when token-driven
SIGMA_LIGHT: Final = (0.2, 0.5)
SIGMA_HEAVY: Final = (0.6, 1.2)
MS_PER_TOKEN_IN: Final = (0.01, 0.08)
MS_PER_TOKEN_OUT: Final = (1.0, 6.0)
QUEUE_PER_SLOT: Final = (5.0, 100.0)  # llm queue_limit = slots × this (log-uniform) ...
UNBOUNDED_QUEUE_P: Final = 0.2  # ... or the default 100000 with this probability
TOOLS_MEDIAN_MS: Final = (30.0, 200.0)
TOOLS_SIGMA: Final = (0.3, 0.6)
TOOLS_UTILIZATION: Final = (0.3, 0.6)  # tools is sized for this share of its peak demand
FANOUT: Final = (1, 3)  # tool calls per LLM call

ARRIVALS_WEIGHTS: Final = {"poisson": 0.6, "azure-conv": 0.25, "azure-code": 0.15}
TOKENS: Final = ("azure-conv", "azure-code", "none")
TRACE_SPEEDUP: Final = (0.01, 400.0)  # the solver's bounds for trace_speedup

MAX_ATTEMPTS: Final = (2, 3, 4, 5, 8)
NO_RETRY_P: Final = 0.15  # max_attempts = 1
BACKOFFS: Final = ("none", "fixed", "exponential")
JITTERS: Final = ("none", "full", "equal", "decorrelated")
BASE_MS: Final = (20, 1000)  # log-uniform
CAP_MS: Final = (1000, 20000)  # log-uniform, at least base_ms
TIMEOUT_X: Final = (3.0, 30.0)  # timeout = llm mean service ms × this (log-uniform) ...
TIMEOUT_MS: Final = (500, 30000)  # ... clipped to this
DEADLINE_X: Final = (1.5, 6.0)  # deadline = timeout × this (uniform) ...
DEADLINE_MS: Final = (2000, 60000)  # ... clipped to this
SHARED_RETRY_P: Final = 0.5  # all tenants use one drawn retry policy

PRIORITY_MODES: Final = ("same", "random", "two-class")

SHAPES: Final = ("steady", "ramp", "spike")
SHAPE_WEIGHTS: Final = (0.5, 0.25, 0.25)
RAMP_TO_X: Final = (1.5, 3.0)  # the ramp's final multiplier, clipped to ...
RAMP_PEAK_CAP: Final = 2.5  # ... keep base load × multiplier at most this, ...
RAMP_TO_X_MIN: Final = 1.2  # ... but ramp at least this much
SPIKE_X: Final = (2.0, 6.0)
SPIKE_S: Final = (10.0, 30.0)
STOP_P: Final = 0.2
STOP_AT: Final = (0.6, 0.85)  # share of the run after which arrivals stop

FAULT_PLANS: Final = ("none", "fault", "early-fault", "two-faults", "ramp-fault", "permanent")
FAULT_PLAN_WEIGHTS: Final = (0.22, 0.30, 0.13, 0.12, 0.12, 0.11)
FAULT_KINDS: Final = ("error", "slowdown", "capacity")
ERROR_FRACTION: Final = (0.3, 1.0)
SLOWDOWN_FACTOR: Final = (2.0, 8.0)  # log-uniform
CAPACITY_FRACTION: Final = (0.1, 0.6)
FAULT_S: Final = (2.0, 30.0)  # a single fault's length, log-uniform
SHORT_FAULT_S: Final = (2.0, 15.0)  # early faults and each of two faults
EARLY_START_S: Final = (0.0, 4.5)  # before the governor's warm-up ends
RAMP_FAULT_S: Final = (2.0, 20.0)
TWO_FAULT_GAP_S: Final = 60.0
PERMANENT_SLOWDOWN: Final = (1.3, 2.0)
PERMANENT_CAPACITY: Final = (0.5, 0.77)
PERMANENT_LOAD_MAX: Final = 0.85  # × the capacity left after the change

BENIGN_LOAD: Final = 0.9
DEMAND_SMOOTH_S: Final = 5
INITIAL_S: Final = 10  # ``load_initial``: mean load over the run's first seconds
BEST_TOLERANCE: Final = 0.01  # governor "best" when within this of the best other policy
HARM_RATIO: Final = 0.99  # benign harm: governor goodput below this × none's
HARM_PENALTY: Final = 0.1  # added to a harmed benign scenario's badness when ranking the worst

TENANT_NAMES: Final = ("acme", "globex", "initech", "umbrella")
REF_RE: Final = re.compile(r"^sweep:(\d+):(\d+)$")
REF_PREFIX: Final = "sweep:"


# --- drawing -------------------------------------------------------------------------------------


class _Draw:
    """Typed scalar draws from one numpy ``Generator``."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def uniform(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def loguniform(self, lo: float, hi: float) -> float:
        return float(math.exp(self.rng.uniform(math.log(lo), math.log(hi))))

    def integer(self, lo: int, hi: int) -> int:
        """Uniform on ``lo..hi`` inclusive."""
        return int(self.rng.integers(lo, hi + 1))

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def choice(self, options: Sequence[T], weights: Sequence[float] | None = None) -> T:
        if weights is None:
            return options[int(self.rng.integers(0, len(options)))]
        w = np.asarray(weights, dtype=np.float64)
        return options[int(self.rng.choice(len(options), p=w / w.sum()))]

    def dirichlet(self, n: int) -> list[float]:
        return [float(x) for x in self.rng.dirichlet(np.full(n, 2.0))]


def _r(x: float, nd: int = 3) -> float:
    return round(float(x), nd)


def _sig(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant digits (readable TOML, exact round trip)."""
    if x == 0:
        return 0.0
    return round(float(x), digits - 1 - math.floor(math.log10(abs(x))))


def _round_ms(x: float, step: int = 100) -> int:
    return int(step * round(x / step))


# --- cases ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SweepCase:
    """One drawn scenario: its TOML-shaped document and the parameters it was drawn with."""

    seed: int
    index: int
    data: dict[str, Any]
    params: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{REF_PREFIX}{self.seed}:{self.index}"

    @property
    def kind(self) -> str:
        return str(self.params["kind"])

    @property
    def benign(self) -> bool:
        return bool(self.params["benign"])

    @property
    def has_fault(self) -> bool:
        return bool(self.params["has_fault"])

    def scenario(self) -> Scenario:
        return parse_scenario(self.data, name=self.data["name"])


def parse_ref(ref: str) -> tuple[int, int] | None:
    """``(S, i)`` of a ``sweep:S:i`` reference; None for anything not starting with ``sweep:``."""
    if not ref.startswith(REF_PREFIX):
        return None
    m = REF_RE.match(ref)
    if m is None:
        raise ScenarioError(
            f"scenario {ref!r}: a sweep reference is sweep:S:i (S = sweep seed, i = index >= 0)"
        )
    return int(m.group(1)), int(m.group(2))


def load_sweep_ref(ref: str) -> Scenario:
    """The scenario of a ``sweep:S:i`` reference (what ``sim.scenario.load_scenario`` calls)."""
    parsed = parse_ref(ref)
    if parsed is None:
        raise ScenarioError(f"scenario {ref!r} is not a sweep reference (sweep:S:i)")
    return case_scenario(*parsed)


@lru_cache(maxsize=8)
def case_scenario(seed: int, index: int) -> Scenario:
    """The parsed scenario of case (seed, index), cached per process (each policy run needs it)."""
    return generate_case(seed, index).scenario()


# --- traces: solving trace_speedup for a target rate ---------------------------------------------


@lru_cache(maxsize=2)
def _periodic_trace_s(name: str) -> F64:
    """The trace's arrival offsets (s), repeated as ``sim.arrivals`` repeats them, far enough for
    any (offset, speedup × duration) the sweep can draw."""
    tr = load_trace(name)
    period_ms = tr.span_ms + 1000
    need_s = tr.span_ms / 1000.0 + TRACE_SPEEDUP[1] * DURATION_S[1]
    reps = math.ceil(need_s * 1000.0 / period_ms) + 1
    offs = (tr.offset_ms[None, :] + period_ms * np.arange(reps)[:, None]).ravel() / 1000.0
    out: F64 = offs.astype(np.float64)
    return out


def _trace_rate(name: str, offset_s: float, speedup: float, duration_s: float) -> float:
    """Intents/s the replay produces over ``duration_s`` (no phases)."""
    offs = _periodic_trace_s(name)
    lo, hi = np.searchsorted(offs, [offset_s, offset_s + speedup * duration_s])
    return float(hi - lo) / duration_s


def solve_speedup(name: str, offset_s: float, rate_per_s: float, duration_s: float) -> float:
    """The ``trace_speedup`` at which the replay from ``offset_s`` gives ``rate_per_s``."""
    lo, hi = TRACE_SPEEDUP
    for _ in range(60):  # bisection in log space; the rate is non-decreasing in the speedup
        mid = math.sqrt(lo * hi)
        if _trace_rate(name, offset_s, mid, duration_s) < rate_per_s:
            lo = mid
        else:
            hi = mid
    return _sig(math.sqrt(lo * hi))


def trace_span_s(name: str) -> float:
    return load_trace(name).span_ms / 1000.0


# --- demand and capacity -------------------------------------------------------------------------


def requests_per_intent(tenant: TenantSpec) -> dict[str, float]:
    """Requests an intent sends to each endpoint when every request succeeds (fan-out counted)."""
    out: dict[str, float] = {}
    width = 1.0
    depth = 0
    while True:
        ep = tenant.endpoints[min(depth, len(tenant.endpoints) - 1)]
        out[ep] = out.get(ep, 0.0) + width
        if depth >= len(tenant.fanout) or tenant.fanout[depth] == 0:
            return out
        width *= tenant.fanout[depth]
        depth += 1


def intent_rate_per_s(tenant: TenantSpec, duration_ms: int) -> F64:
    """The tenant's intents per second of the run: the exact Poisson intensity (phases included)
    averaged per second, or the replayed trace's arrivals counted per second (deterministic)."""
    from sim.arrivals import GRID_MS, rate_multiplier, tenant_arrivals

    n_s = math.ceil(duration_ms / 1000)
    if tenant.arrivals == "poisson":
        mid = np.arange(GRID_MS / 2.0, n_s * 1000.0, GRID_MS, dtype=np.float64)
        m = rate_multiplier(tenant, mid).reshape(n_s, 1000 // GRID_MS).mean(axis=1)
        out: F64 = tenant.rate_per_s * m
        return out
    t_ms, _, _ = tenant_arrivals(tenant, duration_ms, np.random.default_rng(0))
    counts: F64 = np.bincount(t_ms // 1000, minlength=n_s)[:n_s].astype(np.float64)
    return counts


def tenant_demand_per_s(sc: Scenario) -> list[dict[str, F64]]:
    """Per tenant: requests per second of the run to each endpoint it calls (first attempts only,
    fan-out children counted)."""
    out: list[dict[str, F64]] = []
    for ten in sc.tenants:
        rate = intent_rate_per_s(ten, sc.duration_ms)
        out.append({ep: k * rate for ep, k in requests_per_intent(ten).items()})
    return out


def demand_per_s(sc: Scenario) -> dict[str, F64]:
    """Requests per second of the run to each endpoint, over all tenants."""
    n_s = math.ceil(sc.duration_ms / 1000)
    out = {s.name: np.zeros(n_s, dtype=np.float64) for s in sc.services}
    for per_ep in tenant_demand_per_s(sc):
        for ep, series in per_ep.items():
            out[ep] += series
    return out


def smoothed_peak(series: F64, window_s: int = DEMAND_SMOOTH_S) -> float:
    if series.size == 0:
        return 0.0
    w = min(window_s, series.size)
    return float(np.convolve(series, np.ones(w) / w, mode="valid").max())


def capacity_per_s(sc: Scenario, shares: Sequence[Mapping[str, float]] | None = None
                   ) -> dict[str, float]:
    """Nominal capacity per endpoint without faults: slots × 1000 / mean service ms
    (``ServiceSpec.mean_service_ms``), the mean tokens being the tenants' trace means weighted by
    ``shares[t][endpoint]`` (each tenant's request rate there; tokens ``none`` count as 0 tokens).
    Without shares, or where they are all 0, the tenants that call the endpoint weigh the same."""
    out: dict[str, float] = {}
    for svc in sc.services:
        users = [t for t, ten in enumerate(sc.tenants) if svc.name in ten.endpoints]
        w = [float(shares[t].get(svc.name, 0.0)) if shares is not None else 1.0 for t in users]
        if sum(w) <= 0.0:
            w = [1.0] * len(users)
        tin = tout = 0.0
        for t, wt in zip(users, w, strict=True):
            a, b = mean_tokens(sc.tenants[t].tokens)
            tin += wt * a
            tout += wt * b
        total = sum(w) or 1.0
        out[svc.name] = svc.slots * 1000.0 / svc.mean_service_ms(tin / total, tout / total)
    return out


def token_bucket_capacity_per_s(sc: Scenario) -> dict[str, float]:
    """Nominal capacity per endpoint as the token-bucket baseline computes it (an unweighted mean
    of the token counts of the tenants with tokens)."""
    from sim.context import SimContext
    from sim.policies.token_bucket import nominal_capacity_per_s
    from sim.rand import RandomStream

    caps = nominal_capacity_per_s(SimContext(sc, RandomStream.from_seed(0)))
    return {s.name: float(c) for s, c in zip(sc.services, caps, strict=True)}


def effective_capacity_factor(faults: Sequence[Mapping[str, Any]], slots: int) -> float:
    """The share of nominal capacity left during a permanent change (1.0 without one)."""
    x = 1.0
    for f in faults:
        if f["kind"] == "slowdown":
            x /= float(f["factor"])
        elif f["kind"] == "capacity":
            x *= max(1, int(slots * float(f["fraction"]))) / slots
    return x


# --- the generator -------------------------------------------------------------------------------


def _retry(d: _Draw, mean_ms: float) -> dict[str, Any]:
    max_attempts = 1 if d.chance(NO_RETRY_P) else d.choice(MAX_ATTEMPTS)
    base = _round_ms(d.loguniform(*BASE_MS), 10)
    cap = max(base, _round_ms(d.loguniform(*CAP_MS), 100))
    timeout = _round_ms(min(max(mean_ms * d.loguniform(*TIMEOUT_X), TIMEOUT_MS[0]), TIMEOUT_MS[1]))
    return {
        "max_attempts": max_attempts,
        "backoff": d.choice(BACKOFFS),
        "base_ms": base,
        "cap_ms": cap,
        "jitter": d.choice(JITTERS),
        "on_error": d.chance(0.9),
        "on_timeout": d.chance(0.9),
        "timeout_ms": timeout,
    }


def _priorities(d: _Draw, n: int) -> tuple[str, list[int]]:
    mode = d.choice(PRIORITY_MODES if n >= 2 else PRIORITY_MODES[:2])
    if mode == "same":
        return mode, [d.integer(0, 9)] * n
    if mode == "random":
        return mode, [d.integer(0, 9) for _ in range(n)]
    hi = d.integer(0, 3)
    lo = d.integer(hi + 3, 9)
    split = d.integer(1, n - 1)  # tenants [0, split) are the important class
    return mode, [hi if i < split else lo for i in range(n)]


def _fault(d: _Draw, kind: str, start_s: float, length_s: float, end_cap_s: float,
           target: str) -> dict[str, Any]:
    f: dict[str, Any] = {
        "kind": kind,
        "start_s": _r(start_s, 2),
        "end_s": _r(min(start_s + length_s, end_cap_s), 2),
    }
    if kind == "error":
        f["fraction"] = _r(d.uniform(*ERROR_FRACTION))
    elif kind == "slowdown":
        f["factor"] = _r(d.loguniform(*SLOWDOWN_FACTOR))
    else:
        f["fraction"] = _r(d.uniform(*CAPACITY_FRACTION))
    f["_target"] = target
    return f


def generate_case(seed: int, index: int) -> SweepCase:
    """Draw scenario ``index`` of sweep ``seed`` (a pure function of the two)."""
    if seed < 0 or index < 0:
        raise ScenarioError("sweep seed and index must be >= 0")
    d = _Draw(np.random.default_rng(np.random.SeedSequence([seed, index])))

    # 1. the run's outline
    plan = d.choice(FAULT_PLANS, FAULT_PLAN_WEIGHTS)
    duration = d.integer(*(DOUBLE_FAULT_DURATION_S if plan == "two-faults" else DURATION_S))
    if plan == "ramp-fault":
        shape = "ramp"
    elif plan == "permanent":
        shape = "steady"
    else:
        shape = d.choice(SHAPES, SHAPE_WEIGHTS)
    gateways = d.integer(*GATEWAYS)
    n_tenants = d.integer(*TENANTS)
    topology = d.choice(TOPOLOGIES, TOPOLOGY_WEIGHTS)
    tail = d.choice(TAILS)

    # 2. services (slots come once the mean service time is known)
    llm: dict[str, Any] = {"name": "llm", "slots": 1}
    if tail == "tokens":
        llm["service_ms_median"] = _r(d.loguniform(*TOKEN_MEDIAN_MS), 1)
        llm["service_ms_sigma"] = _r(d.uniform(*SIGMA_LIGHT))
        llm["ms_per_token_in"] = _r(d.uniform(*MS_PER_TOKEN_IN), 4)
        llm["ms_per_token_out"] = _r(d.uniform(*MS_PER_TOKEN_OUT), 3)
    else:
        llm["service_ms_median"] = _r(d.loguniform(*MEDIAN_MS), 1)
        llm["service_ms_sigma"] = _r(d.uniform(*(SIGMA_HEAVY if tail == "heavy" else SIGMA_LIGHT)))
    llm["error_ms"] = d.integer(1, 20)
    services: list[dict[str, Any]] = [llm]
    tools: dict[str, Any] | None = None
    if topology == "tools":
        tools = {
            "name": "tools",
            "slots": 1,
            "service_ms_median": _r(d.loguniform(*TOOLS_MEDIAN_MS), 1),
            "service_ms_sigma": _r(d.uniform(*TOOLS_SIGMA)),
        }
        services.append(tools)

    # 3. tenants' structure
    prio_mode, prios = _priorities(d, n_tenants)
    tenants: list[dict[str, Any]] = []
    for k in range(n_tenants):
        arrivals = d.choice(tuple(ARRIVALS_WEIGHTS), tuple(ARRIVALS_WEIGHTS.values()))
        if plan == "permanent":  # trace bursts would push a benign change past capacity
            arrivals = "poisson"
        if arrivals != "poisson" and d.chance(0.8):
            tokens = arrivals
        else:
            tokens = d.choice(TOKENS[:2] if tail == "tokens" else TOKENS)
        t: dict[str, Any] = {
            "name": TENANT_NAMES[k],
            "agents": round(d.loguniform(*AGENTS)),
            "priority": prios[k],
            "child_priority_step": 0 if d.chance(0.7) else d.integer(1, 3),
            "arrivals": arrivals,
        }
        if topology == "tools":
            fan = d.integer(*FANOUT)
            if d.chance(0.25):
                t["endpoints"], t["fanout"] = ["llm", "tools", "llm"], [min(fan, 2), 1]
            else:
                t["endpoints"], t["fanout"] = ["llm", "tools"], [fan]
        else:
            t["endpoints"], t["fanout"] = ["llm"], []
        t["tokens"] = tokens
        if arrivals == "poisson":
            t["rate_per_s"] = 1.0
        tenants.append(t)
    doc: dict[str, Any] = {
        "name": f"sweep-{seed}-{index}",
        "description": "",
        "seed": d.integer(0, 2**31 - 1),
        "duration_s": duration,
        "organic": False,
        "gateways": gateways,
        "high_priority_max": min(prios),
        "services": services,
        "tenants": tenants,
    }

    # 4. capacity: slots for a drawn target capacity (nominal capacity is linear in slots), with
    # the tokens weighted by the tenants' shares of the llm's demand
    weights = d.dirichlet(n_tenants) if n_tenants > 1 else [1.0]
    per_slot = capacity_per_s(parse_scenario(doc, doc["name"]),
                              [{"llm": w} for w in weights])["llm"]
    mean_ms = 1000.0 / per_slot
    cap_target = d.loguniform(*CAPACITY_PER_S)
    llm["slots"] = max(1, min(max(round(cap_target / per_slot),
                                  math.ceil(CAPACITY_PER_S[0] / per_slot)),
                              math.floor(CAPACITY_PER_S[1] / per_slot)))
    cap_llm = llm["slots"] * per_slot
    llm["queue_limit"] = (
        100_000 if d.chance(UNBOUNDED_QUEUE_P)
        else max(10, round(llm["slots"] * d.loguniform(*QUEUE_PER_SLOT)))
    )

    # 5. retries, timeouts, deadlines
    shared = _retry(d, mean_ms) if d.chance(SHARED_RETRY_P) else None
    for t in tenants:
        retry = dict(shared) if shared is not None else _retry(d, mean_ms)
        t["retry"] = retry
        lo_dl, hi_dl = DEADLINE_MS
        t["deadline_ms"] = _round_ms(
            min(max(retry["timeout_ms"] * d.uniform(*DEADLINE_X), lo_dl), hi_dl)
        )

    # 6. faults (before the load: a permanent change bounds it)
    fault_target = "tools" if tools is not None and d.chance(0.2) else "llm"
    faults: list[dict[str, Any]] = []
    ramp_window: tuple[float, float] | None = None
    if shape == "ramp":
        ramp_window = (duration * d.uniform(0.1, 0.3), duration * d.uniform(0.7, 1.0))
    if plan == "fault":
        start = d.uniform(max(10.0, 0.15 * duration), 0.6 * duration)
        faults.append(_fault(d, d.choice(FAULT_KINDS), start, d.loguniform(*FAULT_S), duration,
                             fault_target))
    elif plan == "early-fault":
        faults.append(_fault(d, d.choice(FAULT_KINDS), d.uniform(*EARLY_START_S),
                             d.loguniform(*SHORT_FAULT_S), duration, fault_target))
    elif plan == "two-faults":
        first = d.uniform(8.0, duration - 80.0)
        k1 = d.choice(FAULT_KINDS)
        k2 = k1 if d.chance(0.5) else d.choice(FAULT_KINDS)
        faults.append(_fault(d, k1, first, d.loguniform(*SHORT_FAULT_S), duration, fault_target))
        faults.append(_fault(d, k2, first + TWO_FAULT_GAP_S, d.loguniform(*SHORT_FAULT_S),
                             duration, fault_target))
    elif plan == "ramp-fault":
        assert ramp_window is not None
        a, b = ramp_window
        faults.append(_fault(d, d.choice(FAULT_KINDS), d.uniform(a + 0.2 * (b - a),
                                                                a + 0.7 * (b - a)),
                             d.loguniform(*RAMP_FAULT_S), duration, fault_target))
    elif plan == "permanent":
        start = d.uniform(0.2 * duration, 0.6 * duration)
        run_end = duration + max(t["deadline_ms"] + t["retry"]["timeout_ms"]
                                 for t in tenants) / 1000.0 + 1.0
        f: dict[str, Any] = {"start_s": _r(start, 2), "end_s": _r(math.ceil(run_end), 2)}
        if d.chance(0.7):
            f = {"kind": "slowdown", **f, "factor": _r(d.uniform(*PERMANENT_SLOWDOWN))}
        else:
            f = {"kind": "capacity", **f, "fraction": _r(d.uniform(*PERMANENT_CAPACITY))}
        f["_target"] = fault_target
        faults.append(f)
    for f in faults:
        target = llm if f.pop("_target") == "llm" else tools
        assert target is not None
        target.setdefault("faults", []).append(f)
    fault_svc = llm if fault_target == "llm" or tools is None else tools
    # the share of capacity a permanent change leaves (tools' slots are not known yet: ignore the
    # slot rounding of a capacity change there; the recorded effective capacity includes it)
    left = 1.0
    if plan == "permanent":
        left = effective_capacity_factor(faults, llm["slots"] if fault_svc is llm else 1_000_000)

    # 7. demand: the load, its split over tenants, phases
    load_hi = PERMANENT_LOAD_MAX * left if plan == "permanent" else LOAD_X[1]
    load = d.uniform(LOAD_X[0], min(LOAD_X[1], load_hi))
    trace_draws: list[dict[str, Any]] = []
    specs = parse_scenario(doc, doc["name"]).tenants
    for t, w, spec in zip(tenants, weights, specs, strict=True):
        intents = w * load * cap_llm / requests_per_intent(spec)["llm"]
        if t["arrivals"] == "poisson":
            t["rate_per_s"] = _sig(intents)
        else:
            offset = _r(d.uniform(0.0, trace_span_s(t["arrivals"]) - 1.0), 1)
            t["trace_offset_s"] = offset
            t["trace_speedup"] = solve_speedup(t["arrivals"], offset, intents, float(duration))
            trace_draws.append({"tenant": t["name"], "offset_s": offset,
                                "speedup": t["trace_speedup"]})
    phases: dict[str, list[dict[str, Any]]] = {t["name"]: [] for t in tenants}
    shape_params: dict[str, Any] = {}
    if shape == "ramp":
        assert ramp_window is not None
        a, b = ramp_window
        to_x = max(RAMP_TO_X_MIN, min(d.uniform(*RAMP_TO_X), RAMP_PEAK_CAP / load))
        shape_params = {"start_s": _r(a, 2), "end_s": _r(b, 2), "ramp_to_x": _r(to_x)}
        for t in tenants:
            phases[t["name"]].append({"start_s": _r(a, 2), "end_s": _r(b, 2), "rate_x": 1.0,
                                      "ramp_to_x": _r(to_x)})
            if _r(b, 2) < duration:
                phases[t["name"]].append({"start_s": _r(b, 2), "end_s": float(duration),
                                          "rate_x": _r(to_x)})
    elif shape == "spike":
        k = d.integer(0, n_tenants - 1)
        x = d.uniform(*SPIKE_X)
        x = max(1.5, min(x, 1.0 + (PEAK_LOAD_CAP / load - 1.0) / weights[k]))
        length = d.uniform(*SPIKE_S)
        start = d.uniform(0.15 * duration, max(0.15 * duration, duration - length - 5.0))
        shape_params = {"tenant": TENANT_NAMES[k], "start_s": _r(start, 2),
                        "end_s": _r(min(start + length, duration), 2), "rate_x": _r(x)}
        phases[TENANT_NAMES[k]].append({"start_s": _r(start, 2),
                                        "end_s": _r(min(start + length, duration), 2),
                                        "rate_x": _r(x)})
    stop: dict[str, Any] | None = None
    if d.chance(STOP_P):
        at = duration * d.uniform(*STOP_AT)
        transient = [f for f in faults if plan != "permanent"]
        if transient:
            at = max(at, max(float(f["end_s"]) for f in transient) + 10.0)
        if at <= duration - 5.0:
            who = ([t["name"] for t in tenants] if n_tenants == 1 or d.chance(0.7)
                   else [TENANT_NAMES[d.integer(0, n_tenants - 1)]])
            stop = {"at_s": _r(at, 2), "tenants": who}
            for name in who:
                phases[name].append({"start_s": _r(at, 2), "end_s": float(duration),
                                     "rate_x": 0.0})
    for t in tenants:
        if phases[t["name"]]:
            t["phases"] = phases[t["name"]]

    # 8. size tools for its peak demand; measure load against the final capacities
    if tools is not None:
        tools_demand = demand_per_s(parse_scenario(doc, doc["name"]))["tools"]
        tools_mean = float(tools["service_ms_median"]) * math.exp(
            float(tools["service_ms_sigma"]) ** 2 / 2.0)
        util = d.uniform(*TOOLS_UTILIZATION) * (left if fault_svc is tools else 1.0)
        tools["slots"] = max(1, math.ceil(smoothed_peak(tools_demand) * tools_mean / 1000.0
                                          / util))
        tools["queue_limit"] = max(100, 20 * tools["slots"])
    sc = parse_scenario(doc, doc["name"])
    by_tenant = tenant_demand_per_s(sc)
    caps = capacity_per_s(sc, [{ep: float(v.mean()) for ep, v in x.items()} for x in by_tenant])
    demand = demand_per_s(sc)
    mean_d = {ep: float(v.mean()) for ep, v in demand.items()}
    peak_d = {ep: smoothed_peak(v) for ep, v in demand.items()}
    eff = effective_capacity_factor(faults, int(fault_svc["slots"])) if plan == "permanent" else 1.0
    eff_caps = {ep: c * (eff if ep == fault_svc["name"] else 1.0) for ep, c in caps.items()}
    load_mean = max(mean_d[ep] / caps[ep] for ep in caps)
    load_peak = max(peak_d[ep] / caps[ep] for ep in caps)
    load_peak_eff = max(peak_d[ep] / eff_caps[ep] for ep in caps)
    load_initial = max(float(v[:INITIAL_S].mean()) / caps[ep] for ep, v in demand.items())

    # 9. benign or not
    has_fault = plan not in ("none", "permanent")
    polite = all(t["retry"]["backoff"] != "none" and t["retry"]["jitter"] != "none"
                 for t in tenants)
    reason: str | None = None
    if not has_fault and load_peak_eff < BENIGN_LOAD:
        reason = "quiet"
    elif not has_fault and polite:
        reason = "polite-clients"
    benign = reason is not None
    doc["organic"] = benign

    parts = [shape]
    if plan != "none":
        parts.append(f"{plan}:{','.join(str(f['kind']) for f in faults)}")
    if stop is not None:
        parts.append("stop")
    kind = "+".join(parts)
    doc["description"] = (
        f"sweep {seed}:{index}: {kind}, load {load_mean:.2f} mean / {load_peak:.2f} peak"
        + (f" (benign: {reason})" if benign else "")
    )
    params: dict[str, Any] = {
        "kind": kind,
        "benign": benign,
        "benign_reason": reason,
        "has_fault": has_fault,
        "fault_plan": plan,
        "faults": [{"service": fault_target, **f} for f in faults],
        "shape": shape,
        "shape_params": shape_params,
        "stop": stop,
        "duration_s": duration,
        "gateways": gateways,
        "tenants": n_tenants,
        "topology": topology,
        "service_tail": tail,
        "llm": {k: v for k, v in llm.items() if k not in ("name", "faults")},
        "tools": None if tools is None else {k: v for k, v in tools.items()
                                              if k not in ("name", "faults")},
        "load_target": _r(load),
        "load_mean": _r(load_mean),
        "load_peak": _r(load_peak),
        "load_peak_effective": _r(load_peak_eff),
        "load_initial": _r(load_initial),
        "capacity_target_per_s": _r(cap_target, 2),
        "capacity_per_s": {ep: _r(c, 2) for ep, c in caps.items()},
        "token_bucket_capacity_per_s": {ep: _r(c, 2)
                                        for ep, c in token_bucket_capacity_per_s(sc).items()},
        "effective_capacity_per_s": {ep: _r(c, 2) for ep, c in eff_caps.items()},
        "demand_mean_per_s": {ep: _r(v, 2) for ep, v in mean_d.items()},
        "demand_peak_per_s": {ep: _r(v, 2) for ep, v in peak_d.items()},
        "tenant_weights": [_r(w) for w in weights],
        "arrivals": [t["arrivals"] for t in tenants],
        "traces": trace_draws,
        "tokens": [t["tokens"] for t in tenants],
        "retry_styles": [retry_style(t["retry"]) for t in tenants],
        "retry_shared": shared is not None,
        "polite_clients": polite,
        "priority_mode": prio_mode,
        "priorities": prios,
        "sim_seed": doc["seed"],
    }
    return SweepCase(seed, index, doc, params)


def retry_style(retry: Mapping[str, Any]) -> str:
    """``"backoff/jitter xN"``, e.g. ``"exponential/full x3"`` (``x1``: no retries)."""
    return f"{retry['backoff']}/{retry['jitter']} x{retry['max_attempts']}"


# --- TOML ----------------------------------------------------------------------------------------


def to_toml(data: Mapping[str, Any], comments: Sequence[str] = ()) -> str:
    """A TOML document for a scenario-shaped dict, with ``comments`` as its leading lines."""
    head = "".join(f"# {c}\n" if c else "#\n" for c in comments)
    return head + tomli_w.dumps(data)


def case_toml(case: SweepCase) -> str:
    p = case.params
    return to_toml(case.data, [
        f"{case.ref}: drawn by `flyball sim --sweep N --seed {case.seed}` (scenario {case.index})",
        f"kind {p['kind']}; load {p['load_mean']} mean, {p['load_peak']} peak "
        f"(capacity/s {p['capacity_per_s']}); benign: {p['benign_reason'] or 'no'}",
        f"retry styles {p['retry_styles']}; arrivals {p['arrivals']}",
        "Every key is described in sim/scenarios/README.md.",
        "",
    ])


# --- the runner ----------------------------------------------------------------------------------

SLIM_KEYS: Final = (
    "goodput_ratio", "waste_fraction", "attempts_per_intent", "offered_intents",
    "completed_intents", "recovery_s", "latency_p99_ms", "high_priority_availability",
    "jain_fairness", "directives_by_kind", "directive_messages", "false_storm_directives",
)


def run_case_policy(seed: int, index: int, policy: str) -> dict[str, Any]:
    """One (scenario, policy) run in a worker: its slim metrics, or the error it raised."""
    from sim.runner import run_metrics

    t0 = time.perf_counter()
    try:
        m = run_metrics(case_scenario(seed, index), policy)
        out: dict[str, Any] = {k: m.get(k) for k in SLIM_KEYS}
        out["error"] = None
    except Exception as e:  # a policy under development must not sink the whole sweep
        out = {k: None for k in SLIM_KEYS}
        out["error"] = f"{type(e).__name__}: {e}"
    out["elapsed_s"] = round(time.perf_counter() - t0, 3)
    return out


Progress = Callable[[int, int, dict[str, Any]], None]


def stderr_progress(done: int, n: int, row: dict[str, Any]) -> None:
    """One line per finished scenario on stderr."""
    best = row["best_other"]
    gp = row["policies"].get("governor", {}).get("goodput_ratio")
    print(
        f"[{done:>{len(str(n))}}/{n}] {row['id']:<14} {row['kind']:<34} "
        f"load {row['load']:.2f}/{row['load_peak']:.2f}  governor {_f(gp)}  "
        f"best other {best['policy']} {_f(best['goodput_ratio'])}  {row['flag']}  "
        f"({row['elapsed_s']:.1f} s)",
        file=sys.stderr, flush=True,
    )


def _f(x: float | None, spec: str = ".3f") -> str:
    return "—" if x is None else format(x, spec)


def _gp(m: Mapping[str, Any] | None) -> float:
    """Goodput for comparisons: a failed or empty run counts as 0."""
    if not m or m.get("goodput_ratio") is None:
        return 0.0
    return float(m["goodput_ratio"])


def scenario_row(case: SweepCase, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One scenario's result: parameters, every policy's goodput/waste, the governor's verdict."""
    gov = results.get("governor")
    others = {p: m for p, m in results.items() if p != "governor"}
    best_p = max(others, key=lambda p: _gp(others[p])) if others else None
    best_gp = _gp(others[best_p]) if best_p is not None else 0.0
    gov_gp = _gp(gov)
    shortfall = best_gp - gov_gp
    storms = int((gov or {}).get("false_storm_directives") or 0)
    harm: dict[str, bool] | None = None
    if case.benign:
        none_gp = _gp(results.get("none"))
        harm = {"goodput": gov_gp < HARM_RATIO * none_gp, "storm_directives": storms > 0}
    harmed = harm is not None and any(harm.values())
    errors = {p: m["error"] for p, m in results.items() if m.get("error")}
    if errors:
        flag = "ERROR"
    elif harmed:
        flag = "HARM"
    elif gov_gp < best_gp - BEST_TOLERANCE:
        flag = "short"
    else:
        flag = "ok"
    return {
        "id": case.ref,
        "index": case.index,
        "kind": case.kind,
        "benign": case.benign,
        "has_fault": case.has_fault,
        "load": case.params["load_mean"],
        "load_peak": case.params["load_peak"],
        "capacity_per_s": case.params["capacity_per_s"],
        "policies": {
            p: {"goodput_ratio": m.get("goodput_ratio"), "waste_fraction": m.get("waste_fraction")}
            for p, m in results.items()
        },
        "governor": None if gov is None else {
            "directives_by_kind": gov.get("directives_by_kind"),
            "directive_messages": gov.get("directive_messages"),
            "false_storm_directives": gov.get("false_storm_directives"),
            "attempts_per_intent": gov.get("attempts_per_intent"),
            "recovery_s": gov.get("recovery_s"),
        },
        "best_other": {"policy": best_p, "goodput_ratio": None if best_p is None else best_gp},
        "shortfall": round(shortfall, 4),
        "governor_best": gov is not None and gov_gp >= best_gp - BEST_TOLERANCE,
        "harm": harm,
        "badness": round(max(0.0, shortfall) + (HARM_PENALTY if harmed else 0.0), 4),
        "flag": flag,
        "errors": errors,
        "elapsed_s": round(sum(float(m.get("elapsed_s") or 0.0) for m in results.values()), 2),
        "params": case.params,
    }


def _median(xs: Sequence[float]) -> float | None:
    return float(statistics.median(xs)) if xs else None


def summarize(rows: Sequence[dict[str, Any]], seed: int, policies: Sequence[str],
              runtime_s: float, jobs: int) -> dict[str, Any]:
    """The sweep's report: ``summary``, ``worst`` (five) and ``scenarios``."""
    n = len(rows)
    fault_rows = [r for r in rows if r["has_fault"]]
    benign_rows = [r for r in rows if r["benign"]]
    harmed = [r for r in benign_rows if r["harm"] and any(r["harm"].values())]

    def waste(r: dict[str, Any], p: str) -> float | None:
        v = r["policies"].get(p, {}).get("waste_fraction")
        return None if v is None else float(v)

    waste_median = {
        p: _median([w for r in fault_rows if (w := waste(r, p)) is not None]) for p in policies
    }
    goodput_mean = {
        p: (statistics.fmean(v) if (v := [float(g) for r in rows
                                          if (g := r["policies"].get(p, {}).get("goodput_ratio"))
                                          is not None]) else None)
        for p in policies
    }
    best_count = dict.fromkeys(policies, 0)
    for r in rows:
        gps = {p: _gp(r["policies"].get(p)) for p in policies}
        top = max(gps.values()) if gps else 0.0
        for p, g in gps.items():
            if g >= top - BEST_TOLERANCE:
                best_count[p] += 1
    shortfalls = [float(r["shortfall"]) for r in rows]
    summary: dict[str, Any] = {
        "n": n,
        "seed": seed,
        "policies": list(policies),
        "jobs": jobs,
        "runtime_s": round(runtime_s, 1),
        "cpu_s": round(sum(float(r["elapsed_s"]) for r in rows), 1),
        "governor_best_share": (sum(1 for r in rows if r["governor_best"]) / n) if n else None,
        "benign_n": len(benign_rows),
        "benign_harm": len(harmed),
        "benign_harm_ids": [r["id"] for r in harmed],
        "benign_harm_goodput": sum(1 for r in harmed if r["harm"]["goodput"]),
        "benign_harm_storm": sum(1 for r in harmed if r["harm"]["storm_directives"]),
        "fault_n": len(fault_rows),
        "storm_waste_median": waste_median.get("governor"),
        "waste_median_with_fault": waste_median,
        "goodput_mean": goodput_mean,
        "within_tolerance_of_best": best_count,
        "governor_shortfall_median": _median(shortfalls),
        "governor_shortfall_max": max(shortfalls) if shortfalls else None,
        "false_storm_directives": sum(
            int((r["governor"] or {}).get("false_storm_directives") or 0) for r in rows),
        "errors": sum(len(r["errors"]) for r in rows),
    }
    worst_rows = sorted(rows, key=lambda r: (-float(r["badness"]), r["index"]))[:5]
    worst = [
        {
            "id": r["id"],
            "kind": r["kind"],
            "benign": r["benign"],
            "badness": r["badness"],
            "shortfall": r["shortfall"],
            "harm": r["harm"],
            "goodput": {p: m["goodput_ratio"] for p, m in r["policies"].items()},
            "governor": r["governor"],
            "params": r["params"],
            "command": f"flyball sim --scenario {r['id']} --compare",
            "dump": f"flyball sim --scenario {r['id']} --dump-scenario "
                    f"{r['id'].replace(':', '-')}.toml",
        }
        for r in worst_rows
    ]
    return {"summary": summary, "worst": worst, "scenarios": list(rows)}


def run_sweep(n: int, seed: int = 1, jobs: int | None = None,
              policies: Sequence[str] | None = None,
              progress: Progress | None = stderr_progress) -> dict[str, Any]:
    """Draw ``n`` scenarios of sweep ``seed``, run every policy on each, summarize."""
    from sim.runner import available_policies

    if n < 1:
        raise ScenarioError("--sweep N: N must be >= 1")
    t0 = time.perf_counter()
    if policies is None:
        names, missing = available_policies()
        for name, why in missing.items():
            print(f"note: policy {name!r} skipped: {why}", file=sys.stderr)
        policies = names
    jobs = max(1, jobs if jobs is not None else (os.cpu_count() or 1))
    cases = [generate_case(seed, i) for i in range(n)]
    results: dict[int, dict[str, dict[str, Any]]] = {i: {} for i in range(n)}
    rows: dict[int, dict[str, Any]] = {}

    def finished(i: int, policy: str, m: dict[str, Any]) -> None:
        results[i][policy] = m
        if len(results[i]) == len(policies):
            ordered = {p: results[i][p] for p in policies}
            rows[i] = scenario_row(cases[i], ordered)
            if progress is not None:
                progress(len(rows), n, rows[i])

    if jobs == 1:
        for i in range(n):
            for p in policies:
                finished(i, p, run_case_policy(seed, i, p))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures: dict[Future[dict[str, Any]], tuple[int, str]] = {
                pool.submit(run_case_policy, seed, i, p): (i, p)
                for i in range(n) for p in policies
            }
            for fut in as_completed(futures):
                i, p = futures[fut]
                finished(i, p, fut.result())
    ordered_rows = [rows[i] for i in range(n)]
    return summarize(ordered_rows, seed, policies, time.perf_counter() - t0, jobs)


# --- presenting ----------------------------------------------------------------------------------


def print_report(report: dict[str, Any]) -> None:
    """A readable table (one line per scenario) and the summary."""
    from rich.console import Console, JustifyMethod
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    s = report["summary"]
    table = Table(title=f"sweep seed {s['seed']}: {s['n']} scenarios × {len(s['policies'])} "
                        "policies", show_lines=False)
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("id", "left"), ("kind", "left"), ("load mean/peak", "right"), ("governor", "right"),
        ("best other", "left"), ("goodput", "right"), ("flag", "left"),
    )
    for col, justify in columns:
        table.add_column(col, justify=justify, no_wrap=True)
    for r in report["scenarios"]:
        gov = r["policies"].get("governor", {}).get("goodput_ratio")
        flag = r["flag"] + (" (benign)" if r["benign"] else "")
        table.add_row(r["id"], r["kind"], f"{r['load']:.2f}/{r['load_peak']:.2f}", _f(gov),
                      str(r["best_other"]["policy"]), _f(r["best_other"]["goodput_ratio"]), flag)
    console.print(table)
    lines = [
        f"governor within {BEST_TOLERANCE} of the best other policy: "
        f"{_f(s['governor_best_share'], '.0%')} of {s['n']} scenarios",
        f"benign scenarios harmed: {s['benign_harm']} of {s['benign_n']} "
        f"(goodput {s['benign_harm_goodput']}, storm directives {s['benign_harm_storm']})",
        f"median waste with a fault ({s['fault_n']} scenarios): "
        + ", ".join(f"{p} {_f(v)}" for p, v in s["waste_median_with_fault"].items()),
        "mean goodput: " + ", ".join(f"{p} {_f(v)}" for p, v in s["goodput_mean"].items()),
        f"governor shortfall vs best other: median {_f(s['governor_shortfall_median'])}, "
        f"max {_f(s['governor_shortfall_max'])}",
        f"runtime {s['runtime_s']:.1f} s wall, {s['cpu_s']:.1f} s of runs, {s['jobs']} jobs"
        + (f"; {s['errors']} runs failed" if s["errors"] else ""),
        "worst for the governor (re-run one alone):",
    ]
    lines += [f"  {w['command']}   # {w['kind']}, shortfall {w['shortfall']:.3f}"
              + (" (benign, harmed)" if w["harm"] and any(w["harm"].values()) else "")
              for w in report["worst"]]
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)


def run_sweep_cli(n: int, seed: int | None, jobs: int | None, as_json: bool) -> int:
    """``flyball sim --sweep N``: 0 ok, 2 bad arguments or scenario."""
    try:
        report = run_sweep(n, 1 if seed is None else seed, jobs)
    except ScenarioError as e:
        print(f"flyball sim: {e}", file=sys.stderr)
        return 2
    if as_json:
        sys.stdout.write(json.dumps(report, separators=(",", ":"), allow_nan=False) + "\n")
    else:
        print_report(report)
    s = report["summary"]
    print(f"sweep: {s['n']} scenarios in {s['runtime_s']:.1f} s", file=sys.stderr)
    return 0
