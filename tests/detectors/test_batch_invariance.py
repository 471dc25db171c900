"""The governor's output is a function of the log's order, not of how the log was batched.

A restarted worker, a replay and the simulator cut the same log into different batches; with
out-of-order arrivals (several gateways, lingering buffers) lateness must still be decided the same
way, or the same incident would yield different directives live and in replay.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from synth import Scenario, generate

from detectors.governor import Governor
from schemas.columns import EventColumns


def _disordered(pattern: str, seed: int) -> EventColumns:
    """Arrival order = completion time plus up to 400 ms of per-event delay (> the 200 ms
    allowed lateness), so some events are late and which ones depends only on this order."""
    events = generate(Scenario(pattern=pattern, rate_per_s=300.0, duration_ms=16_000,
                               onset_ms=12_000, seed=seed))
    rng = np.random.default_rng(seed)
    arrival = events.ts_ms + events.latency_ms + rng.integers(0, 400, len(events))
    return events.take(np.argsort(arrival, kind="stable"))


def _run(events: EventColumns, cuts: np.ndarray) -> tuple[list[object], int]:
    gov = Governor()
    directives: list[object] = []
    late = 0
    for lo, hi in itertools.pairwise(cuts):
        late += gov.ingest(events.take(np.arange(lo, hi))).late
        out = gov.advance()
        directives += [d.to_json() for d in out.directives]
    return directives, late


@pytest.mark.parametrize(("pattern", "seed"), [("saturation", 3), ("contention", 5)])
def test_same_log_any_batching_same_directives(pattern: str, seed: int) -> None:
    events = _disordered(pattern, seed)
    n = len(events)
    rng = np.random.default_rng(seed)
    results = []
    for sizes in (50, 500, 4_000, None):
        if sizes is None:  # random cut points
            cuts = np.unique(np.concatenate(([0, n], rng.integers(0, n, 40))))
        else:
            cuts = np.unique(np.append(np.arange(0, n, sizes), n))
        results.append(_run(events, cuts))
    directives0, late0 = results[0]
    assert late0 > 0, "the disorder must exceed the allowed lateness for this test to mean much"
    assert any(directives0)
    for directives, late in results[1:]:
        assert late == late0
        assert directives == directives0
