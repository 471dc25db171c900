"""A tiny HyperLogLog (64 registers) for distinct agents: mergeable by element-wise ``max``.

Standard error ~1.04/sqrt(64) = 13 %, exact-ish below ~100 through linear counting. Hashes are
blake2b (stable across processes, unlike ``hash()``), computed once per *distinct* string and
cached across batches, never per event.
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
_POW2_NEG: F64 = np.power(2.0, -np.arange(256, dtype=np.float64))  # 2 ** -register, exact


# value -> (register index << 8) | rank, shared by every caller: entries are pure functions of the
# value, so concurrent use can at worst compute one twice. Bounded: cleared when full.
_CACHE: dict[str, int] = {}
_CACHE_MAX = 1 << 18


def _packed(s: str) -> int:
    h = int.from_bytes(hashlib.blake2b(str(s).encode(), digest_size=8).digest(), "little")
    return ((h & (HLL_M - 1)) << 8) | (_W_BITS - (h >> _P).bit_length() + 1)


def register_of(values: npt.NDArray[np.object_]) -> tuple[I64, I64]:
    """(register index, rank) for each string of ``values`` (hashing only strings not seen
    before: hashes of distinct values are cached across calls)."""
    lst = values.tolist()
    try:
        packed = np.fromiter(map(_CACHE.__getitem__, lst), dtype=np.int64, count=len(lst))
    except KeyError:
        local = {s: _CACHE.get(s) for s in dict.fromkeys(lst)}
        missing = [s for s, v in local.items() if v is None]
        if len(_CACHE) + len(missing) > _CACHE_MAX:
            _CACHE.clear()
        for s in missing:
            local[s] = _CACHE[s] = _packed(s)
        packed = np.fromiter(map(local.__getitem__, lst), dtype=np.int64, count=len(lst))
    return packed >> 8, packed & 0xFF


def estimate(registers: U8) -> F64:
    """Distinct-count estimate for each row of registers (rows, HLL_M)."""
    if registers.dtype == np.uint8:
        powers = _POW2_NEG[registers]
    else:
        powers = np.power(2.0, -registers.astype(np.float64))
    raw = _ALPHA * HLL_M * HLL_M / powers.sum(axis=1)
    zeros = (registers == 0).sum(axis=1)
    linear = HLL_M * np.log(HLL_M / np.maximum(zeros, 1))
    out = np.where((raw <= 2.5 * HLL_M) & (zeros > 0), linear, raw)
    return np.where(zeros == HLL_M, 0.0, out)
