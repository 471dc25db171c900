"""Intent arrivals per tenant, generated up front with numpy (vectorized, seeded).

A tenant's demand is an intensity ``base × m(t)``, where ``m(t)`` multiplies the ``rate_x`` of every
active phase (ramping linearly to ``ramp_to_x`` when given). Arrivals are points of a unit-rate
process mapped through the inverse of the cumulative intensity:

- ``poisson``: unit-rate exponential gaps in "operational time" Λ(t) = ∫ rate_per_s·m(t) dt;
- ``azure-*``: the real trace's timestamps in trace time, where trace time advances at
  ``trace_speedup × m(t)`` trace-seconds per simulated second (the trace repeats if it runs out).

Either way a phase with ``rate_x = 12`` makes that tenant's arrivals twelve times as dense.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sim.scenario import Scenario, TenantSpec
from sim.trace import load_trace

GRID_MS = 10

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Arrivals:
    """All intents of a run, sorted by time: one row per intent."""

    t_ms: I64
    tenant: I64
    agent: I64
    tokens_in: I64
    tokens_out: I64

    def __len__(self) -> int:
        return int(self.t_ms.shape[0])


def rate_multiplier(tenant: TenantSpec, t_ms: F64) -> F64:
    """m(t): the product of every active phase's (possibly ramping) rate multiplier."""
    m = np.ones_like(t_ms, dtype=np.float64)
    for ph in tenant.phases:
        active = (t_ms >= ph.start_ms) & (t_ms < ph.end_ms)
        if ph.ramp_to_x is None:
            x = np.full_like(t_ms, ph.rate_x, dtype=np.float64)
        else:
            frac = (t_ms - ph.start_ms) / float(ph.end_ms - ph.start_ms)
            x = ph.rate_x + (ph.ramp_to_x - ph.rate_x) * frac
        m = np.where(active, m * x, m)
    return m


def _cumulative(tenant: TenantSpec, duration_ms: int, per_s: float) -> tuple[F64, F64]:
    """Grid times (ms) and ∫ per_s·m(t) dt at them (trapezoid, in units of per_s × seconds)."""
    grid = np.arange(0, duration_ms + GRID_MS, GRID_MS, dtype=np.float64)
    mid = grid[:-1] + GRID_MS / 2.0
    inc = per_s * rate_multiplier(tenant, mid) * (GRID_MS / 1000.0)
    cum = np.concatenate([[0.0], np.cumsum(inc)])
    return grid, cum


def _invert(points: F64, grid: F64, cum: F64) -> I64:
    """Times at which the cumulative intensity reaches each point (points < cum[-1])."""
    # Flat stretches of cum (m = 0) are skipped: interp over the strictly increasing part.
    keep = np.concatenate([[True], np.diff(cum) > 0])
    t = np.interp(points, cum[keep], grid[keep])
    out: I64 = np.floor(t).astype(np.int64)
    return out


def tenant_arrivals(
    tenant: TenantSpec, duration_ms: int, rng: np.random.Generator
) -> tuple[I64, I64, I64]:
    """(t_ms, tokens_in, tokens_out) of one tenant's intents in ``[0, duration_ms)``."""
    if tenant.arrivals == "poisson":
        grid, cum = _cumulative(tenant, duration_ms, tenant.rate_per_s)
        total = float(cum[-1])
        n_guess = int(total + 10.0 * np.sqrt(total + 1.0) + 10)
        pts = np.cumsum(rng.exponential(1.0, size=n_guess))
        while pts[-1] < total:  # pragma: no cover - n_guess is ~10 sigma above the mean
            more = pts[-1] + np.cumsum(rng.exponential(1.0, size=n_guess))
            pts = np.concatenate([pts, more])
        pts = pts[pts < total]
        t = _invert(pts, grid, cum)
        tin, tout = _tokens(tenant.tokens, len(t), rng)
        return t, tin, tout
    trace = load_trace(tenant.arrivals)
    grid, cum = _cumulative(tenant, duration_ms, tenant.trace_speedup)  # trace-seconds
    start_s = tenant.trace_offset_s
    end_s = start_s + float(cum[-1])
    period_ms = trace.span_ms + 1000  # repeat the trace with a one-second seam
    reps = int(np.ceil(end_s * 1000.0 / period_ms)) + 1
    offs = (trace.offset_ms[None, :] + period_ms * np.arange(reps)[:, None]).ravel() / 1000.0
    idx = np.nonzero((offs >= start_s) & (offs < end_s))[0]
    t = _invert(offs[idx] - start_s, grid, cum)
    rows = idx % len(trace.offset_ms)
    if tenant.tokens == tenant.arrivals:
        return t, trace.tokens_in[rows], trace.tokens_out[rows]
    tin, tout = _tokens(tenant.tokens, len(t), rng)
    return t, tin, tout


def _tokens(source: str, n: int, rng: np.random.Generator) -> tuple[I64, I64]:
    if source == "none":
        z = np.zeros(n, dtype=np.int64)
        return z, z.copy()
    trace = load_trace(source)
    rows = rng.integers(0, len(trace.offset_ms), size=n)
    return trace.tokens_in[rows], trace.tokens_out[rows]


def generate(scenario: Scenario, rng: np.random.Generator) -> Arrivals:
    """Every tenant's arrivals merged in time order (ties keep tenant order: deterministic)."""
    parts_t: list[I64] = []
    parts_ten: list[I64] = []
    parts_agent: list[I64] = []
    parts_in: list[I64] = []
    parts_out: list[I64] = []
    for i, ten in enumerate(scenario.tenants):
        t, tin, tout = tenant_arrivals(ten, scenario.duration_ms, rng)
        parts_t.append(t)
        parts_ten.append(np.full(len(t), i, dtype=np.int64))
        parts_agent.append(rng.integers(0, ten.agents, size=len(t)).astype(np.int64))
        parts_in.append(tin.astype(np.int64))
        parts_out.append(tout.astype(np.int64))
    t_all = np.concatenate(parts_t)
    order = np.argsort(t_all, kind="stable")
    return Arrivals(
        t_ms=t_all[order],
        tenant=np.concatenate(parts_ten)[order],
        agent=np.concatenate(parts_agent)[order],
        tokens_in=np.concatenate(parts_in)[order],
        tokens_out=np.concatenate(parts_out)[order],
    )
