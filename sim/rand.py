"""Buffered scalar draws from a seeded numpy ``Generator``.

The event loop needs millions of single uniforms and normals; one numpy call per draw costs about
a microsecond, so draws are made 8,192 at a time and handed out from a Python list. The sequence is
a pure function of the seed.
"""

from __future__ import annotations

import numpy as np

_BATCH = 8192


class RandomStream:
    __slots__ = ("_gen", "_i", "_j", "_norm", "_unif")

    def __init__(self, gen: np.random.Generator) -> None:
        self._gen = gen
        self._unif: list[float] = []
        self._norm: list[float] = []
        self._i = 0
        self._j = 0

    @staticmethod
    def from_seed(seed: int) -> RandomStream:
        return RandomStream(np.random.default_rng(seed))

    def random(self) -> float:
        """Uniform on [0, 1)."""
        i = self._i
        if i >= len(self._unif):
            self._unif = self._gen.random(_BATCH).tolist()
            i = 0
        self._i = i + 1
        return self._unif[i]

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.random()

    def normal(self) -> float:
        """Standard normal."""
        j = self._j
        if j >= len(self._norm):
            self._norm = self._gen.standard_normal(_BATCH).tolist()
            j = 0
        self._j = j + 1
        return self._norm[j]
