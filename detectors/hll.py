"""A tiny HyperLogLog (64 registers) for distinct agents: mergeable by element-wise ``max``.

Standard error ~1.04/sqrt(64) = 13 %, exact-ish below ~100 through linear counting. Hashes are
blake2b (stable across processes, unlike ``hash()``), computed once per *distinct* string of a
batch, never per event.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import numpy.typing as npt

from detectors.layout import F64, HLL_M, I64, U8

_P = int(math.log2(HLL_M))
_W_BITS = 64 - _P
_ALPHA = 0.709  # bias constant for m = 64


def register_of(values: npt.NDArray[np.object_]) -> tuple[I64, I64]:
    """(register index, rank) for each string of ``values`` (hashing only the distinct ones)."""
    uniq, inverse = np.unique(values, return_inverse=True)
    idx = np.empty(uniq.shape[0], dtype=np.int64)
    rank = np.empty(uniq.shape[0], dtype=np.int64)
    for i, s in enumerate(uniq.tolist()):
        h = int.from_bytes(hashlib.blake2b(str(s).encode(), digest_size=8).digest(), "little")
        idx[i] = h & (HLL_M - 1)
        rank[i] = _W_BITS - (h >> _P).bit_length() + 1
    inv = inverse.reshape(-1)
    return idx[inv], rank[inv]


def estimate(registers: U8) -> F64:
    """Distinct-count estimate for each row of registers (rows, HLL_M)."""
    regs = registers.astype(np.float64)
    raw = _ALPHA * HLL_M * HLL_M / np.power(2.0, -regs).sum(axis=1)
    zeros = (registers == 0).sum(axis=1)
    linear = HLL_M * np.log(HLL_M / np.maximum(zeros, 1))
    out = np.where((raw <= 2.5 * HLL_M) & (zeros > 0), linear, raw)
    return np.where(zeros == HLL_M, 0.0, out)
