"""Metric definitions on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest

from sim.metrics import jain_index, recovery_seconds


def test_jain_index() -> None:
    assert jain_index([1, 1, 1]) == pytest.approx(1.0)
    assert jain_index([1, 0, 0, 0]) == pytest.approx(0.25)
    assert jain_index([]) is None
    assert jain_index([0, 0]) == 1.0


def test_recovery_seconds() -> None:
    c = np.ones(60)
    assert recovery_seconds(c, 20_000, 25_000) == 0.0  # never dipped
    c[20:33] = 0.0
    assert recovery_seconds(c, 20_000, 25_000) == 8.0  # ok again from second 33
    c[36] = 0.5  # a relapse inside the 5-s hold restarts it
    assert recovery_seconds(c, 20_000, 25_000) == 12.0
    c[25:] = 0.0
    assert recovery_seconds(c, 20_000, 25_000) is None
    c2 = np.ones(60)
    c2[40:] = 0.89  # below 90% of the pre-fault level forever
    c2[20:25] = 0.0
    assert recovery_seconds(c2, 20_000, 25_000) == 0.0  # recovered 25..30 before dipping
