"""Metrics of one run, as a JSON-ready dict (definitions in scenarios/README.md, "Metrics").

- ``offered_intents``: intents that arrived during the run (``duration_s``).
- ``completed_intents``: intents whose every request succeeded by the intent's deadline ("good").
- ``goodput_ratio``: completed_intents / offered_intents.
- ``attempts``: request attempts the clients made (including ones rejected at the gateway).
- ``waste_fraction``: service work (slot-ms) spent on results nobody used ÷ all service work. Work
  is used only when it was an attempt delivered OK to a client whose intent then completed in
  time; everything else is waste: work for clients that had timed out, errors, and work for
  intents that failed, were abandoned or finished late.
- ``latency_p50_ms`` / ``latency_p99_ms``: arrival to completion of completed intents.
- ``recovery_s``: per arrival second, the share of intents that completed ("cohort goodput"). The
  pre-fault level is its mean over the seconds before the first fault. Recovery is the first second
  s at or after the last fault's end such that the cohort goodput of every second in [s, s+5) is at
  least 90% of the pre-fault level; ``recovery_s`` = s − fault end, in seconds (0 when the system
  never dipped). ``null`` when it never holds within the run or the scenario has no fault.
- ``jain_fairness``: Jain's index (Σx)² / (n·Σx²) over tenants, x = the tenant's goodput ratio.
- ``high_priority_availability``: among intents with priority <= ``high_priority_max`` (scenario
  key, default 0), the share that completed by their deadline.
- ``directives_by_kind``: distinct directives (by id) per action type; ``directive_messages`` counts
  every issue including refreshes.
- ``false_storm_directives``: in a scenario marked ``organic = true``, the distinct directives
  raised by a retry-storm detector (their reason's detector name contains "storm" or "retry").
  Always 0 in non-organic scenarios (it is not applicable there).
- ``timeline``: per second of the run: ``offered`` (arrivals), ``goodput`` (intents completing in
  time, by completion second), ``cohort_goodput`` (share of that second's arrivals that completed),
  ``attempts`` (by start second), ``errors`` (attempts that did not return OK, by start second) and
  ``directives`` (directive messages issued that second).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.columns import STATUS_OK
from schemas.directive import Directive
from sim.engine import RunResult
from sim.model import GOOD, R_START, R_STATUS

RECOVERY_HOLD_S = 5
RECOVERY_LEVEL = 0.9

F64 = npt.NDArray[np.float64]


def jain_index(x: npt.ArrayLike) -> float | None:
    """Jain's fairness index of non-negative values; None for no values, 1.0 when all are 0."""
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        return None
    s2 = float((a * a).sum())
    if s2 == 0.0:
        return 1.0
    return float(a.sum() ** 2 / (a.size * s2))


def cohort_goodput(r: RunResult) -> F64:
    """Per arrival second: the share of that second's intents that completed (NaN if none)."""
    n_s = math.ceil(r.scenario.duration_ms / 1000)
    sec = r.arrivals.t_ms // 1000
    offered = np.bincount(sec, minlength=n_s)[:n_s].astype(np.float64)
    good = np.bincount(sec, weights=(r.outcome == GOOD), minlength=n_s)[:n_s]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(offered > 0, good / np.maximum(offered, 1.0), np.nan)


def recovery_seconds(cohort: F64, fault_start_ms: int, fault_end_ms: int) -> float | None:
    """See the module docstring; ``cohort`` is ``cohort_goodput``."""
    fs = fault_start_ms // 1000
    pre = cohort[1:fs] if fs > 1 else cohort[:fs]
    pre = pre[~np.isnan(pre)]
    if pre.size == 0:
        return None
    level = RECOVERY_LEVEL * float(pre.mean())
    ok = np.isnan(cohort) | (cohort >= level)
    first = math.ceil(fault_end_ms / 1000)
    for s in range(first, len(cohort) - RECOVERY_HOLD_S + 1):
        if bool(ok[s : s + RECOVERY_HOLD_S].all()):
            # recovered at s; if goodput never dipped after the fault this is 0
            return float(max(0.0, s - fault_end_ms / 1000.0))
    return None


def _is_storm(d: Directive) -> bool:
    name = d.reason.detector.lower()
    return "storm" in name or "retry" in name


def compute(r: RunResult) -> dict[str, Any]:
    sc = r.scenario
    n_s = math.ceil(sc.duration_ms / 1000)
    offered = len(r.arrivals)
    good_mask = r.outcome == GOOD
    completed = int(good_mask.sum())
    lat = (r.done_ms - r.arrivals.t_ms)[good_mask]
    rows = r.rows
    status = rows[:, R_STATUS]
    start_s = rows[:, R_START] // 1000
    in_run = start_s < n_s

    per_tenant = []
    ratios = []
    for i, t in enumerate(sc.tenants):
        m = r.arrivals.tenant == i
        n = int(m.sum())
        g = int((good_mask & m).sum())
        ratio = g / n if n else None
        if ratio is not None:
            ratios.append(ratio)
        per_tenant.append({"tenant": t.name, "offered": n, "completed": g, "goodput_ratio": ratio})

    hp = r.priority <= sc.high_priority_max
    n_hp = int(hp.sum())
    hp_avail = float((good_mask & hp).sum() / n_hp) if n_hp else None

    by_kind: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    false_storm: set[str] = set()
    dir_sec = np.zeros(n_s, dtype=np.int64)
    for t_ms, d in r.directives:
        key = (d.id, d.action.type)
        if key not in seen:
            seen.add(key)
            by_kind[d.action.type] = by_kind.get(d.action.type, 0) + 1
        if sc.organic and d.action.type != "release" and _is_storm(d):
            false_storm.add(d.id)
        s = t_ms // 1000
        if 0 <= s < n_s:
            dir_sec[s] += 1

    cohort = cohort_goodput(r)
    fw = sc.fault_window_ms()
    recovery = recovery_seconds(cohort, fw[0], fw[1]) if fw else None
    done_s = r.done_ms[good_mask] // 1000
    timeline = {
        "t_s": list(range(n_s)),
        "offered": np.bincount(r.arrivals.t_ms // 1000, minlength=n_s)[:n_s].tolist(),
        "goodput": np.bincount(done_s[done_s < n_s], minlength=n_s)[:n_s].tolist(),
        "cohort_goodput": [None if math.isnan(v) else round(float(v), 4) for v in cohort],
        "attempts": np.bincount(start_s[in_run], minlength=n_s)[:n_s].tolist(),
        "errors": np.bincount(start_s[in_run & (status != STATUS_OK)], minlength=n_s)[
            :n_s
        ].tolist(),
        "directives": dir_sec.tolist(),
    }
    return {
        "scenario": sc.name,
        "policy": r.policy,
        "seed": r.seed,
        "duration_s": sc.duration_ms / 1000.0,
        "offered_intents": offered,
        "completed_intents": completed,
        "goodput_ratio": completed / offered if offered else None,
        "attempts": len(rows),
        "attempts_per_intent": len(rows) / offered if offered else None,
        "waste_fraction": 1.0 - r.useful_work_ms / r.work_ms if r.work_ms else 0.0,
        "service_work_s": r.work_ms / 1000.0,
        "dropped_expired": r.dropped,
        "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "latency_p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "recovery_s": recovery,
        "jain_fairness": jain_index(ratios),
        "high_priority_max": sc.high_priority_max,
        "high_priority_availability": hp_avail,
        "directives_by_kind": dict(sorted(by_kind.items())),
        "directive_messages": len(r.directives),
        "false_storm_directives": len(false_storm),
        "organic": sc.organic,
        "policy_stats": r.policy_stats,
        "tenants": per_tenant,
        "timeline": timeline,
    }
