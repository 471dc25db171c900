"""The governor adapter's plumbing, with a scripted stand-in for ``detectors.governor``.

The stand-in issues one shed directive at a fixed time; the test checks that events reach it every
tick as ``EventColumns``, that the directive reaches the gateways after ``control_delay_ms``, and
that ``gateway.enforce`` then rejects exactly the requests in scope.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from schemas.columns import APPLIED_CODES, STATUS_REJECTED, EventColumns
from schemas.directive import Action, Directive, Reason, Scope
from sim.context import SimContext
from sim.engine import simulate
from sim.model import R_APPLIED, R_PRIORITY, R_START, R_STATUS
from sim.scenario import load_scenario

ISSUE_MS = 5_000


@dataclasses.dataclass(frozen=True)
class _Config:
    tick_note: str = ""


@dataclasses.dataclass
class _Output:
    directives: list[Directive]


class _ScriptedGovernor:
    seen: list[EventColumns]
    watermarks: list[int]

    def __init__(self, config: _Config) -> None:
        self.seen = []
        self.watermarks = []
        self.issued = False
        _ScriptedGovernor.last = self  # type: ignore[attr-defined]

    def ingest(self, events: EventColumns) -> None:
        self.seen.append(events)

    def advance(self, watermark_ms: int) -> _Output:
        self.watermarks.append(watermark_ms)
        if self.issued or watermark_ms < SimContext.EPOCH_MS + ISSUE_MS:
            return _Output([])
        self.issued = True
        d = Directive(
            id="shed-batch", issued_ms=watermark_ms, expires_ms=watermark_ms + 10_000,
            scope=Scope(endpoint="llm", min_priority=5),
            action=Action("shed", fraction=1.0, retry_after_ms=1000),
            reason=Reason("scripted", 1.0, {}),
        )
        return _Output([d])


@pytest.fixture
def scripted() -> Iterator[None]:
    fake = types.ModuleType("detectors.governor")
    fake.Governor = _ScriptedGovernor  # type: ignore[attr-defined]
    fake.GovernorConfig = _Config  # type: ignore[attr-defined]
    saved = {k: sys.modules.get(k) for k in ("detectors.governor", "sim.policies.governor")}
    sys.modules["detectors.governor"] = fake
    sys.modules.pop("sim.policies.governor", None)
    importlib.import_module("sim.policies.governor")
    yield
    for k, v in saved.items():
        if v is None:
            sys.modules.pop(k, None)
        else:
            sys.modules[k] = v


def test_directives_flow_from_governor_to_gateways(scripted: None) -> None:
    sc = dataclasses.replace(load_scenario("priority-spike"), duration_ms=12_000)
    r = simulate(sc, "governor")
    gov: Any = _ScriptedGovernor.last  # type: ignore[attr-defined]
    # one advance per control tick, in epoch ms
    assert gov.watermarks[:3] == [SimContext.EPOCH_MS + t for t in (100, 200, 300)]
    assert sum(len(b) for b in gov.seen) == len(r.rows)
    assert all(isinstance(b, EventColumns) for b in gov.seen)
    rows = r.rows
    low = rows[:, R_PRIORITY] >= 5
    start = rows[:, R_START]
    arrive_ms = ISSUE_MS + sc.control_delay_ms
    shed = rows[:, R_APPLIED] == APPLIED_CODES["shed"]
    assert not shed[start < arrive_ms].any()  # nothing before the directive arrives
    window = (start >= arrive_ms) & (start < ISSUE_MS + 10_000)
    assert (rows[window & low, R_STATUS] == STATUS_REJECTED).all()
    assert shed[window & low].all()
    assert not shed[~low].any()  # priority 0 is out of scope
    assert [(t, d.id) for t, d in r.directives] == [(ISSUE_MS, "shed-batch")]
    assert np.any(window & low)
