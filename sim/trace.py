"""The Azure LLM inference trace 2023 (CC-BY-4.0, see ``sim/data/SOURCE.txt`` and ``LICENSE``).

Two gzipped CSVs ship in ``sim/data``: ``TIMESTAMP,ContextTokens,GeneratedTokens`` for a code and a
conversation service (about one hour each). ``load_trace`` returns arrival offsets in ms from the
first request and the token columns, as numpy arrays.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from sim.errors import SimError

DATA_DIR: Final = Path(__file__).resolve().parent / "data"
TRACES: Final = {
    "azure-conv": "AzureLLMInferenceTrace_conv.csv.gz",
    "azure-code": "AzureLLMInferenceTrace_code.csv.gz",
}


@dataclass(frozen=True, slots=True)
class Trace:
    """One trace: ``offset_ms`` (sorted, from 0), ``tokens_in``, ``tokens_out`` (all int64)."""

    name: str
    offset_ms: npt.NDArray[np.int64]
    tokens_in: npt.NDArray[np.int64]
    tokens_out: npt.NDArray[np.int64]

    @property
    def span_ms(self) -> int:
        return int(self.offset_ms[-1]) if len(self.offset_ms) else 0


def mean_tokens(source: str) -> tuple[float, float]:
    """(mean tokens in, mean tokens out) of a tenant's ``tokens`` source: a shipped trace's
    means, or (0, 0) for ``none``."""
    if source == "none":
        return 0.0, 0.0
    tr = load_trace(source)
    return float(tr.tokens_in.mean()), float(tr.tokens_out.mean())


def _parse_ts_ms(text: str) -> int:
    # "2023-11-16 18:17:03.9799600": seconds carry 7 fractional digits; keep integer ms.
    date, _, frac = text.partition(".")
    base = datetime.fromisoformat(date).replace(tzinfo=UTC)
    return int(base.timestamp()) * 1000 + int((frac + "000")[:3])


@lru_cache(maxsize=4)
def load_trace(name: str) -> Trace:
    """Load a shipped trace by name (``azure-conv`` or ``azure-code``)."""
    if name not in TRACES:
        raise SimError(f"unknown trace {name!r}; known: {sorted(TRACES)}")
    path = DATA_DIR / TRACES[name]
    ts: list[int] = []
    tin: list[int] = []
    tout: list[int] = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            header = f.readline().strip()
            if header != "TIMESTAMP,ContextTokens,GeneratedTokens":
                raise SimError(f"{path.name}: unexpected header {header!r}")
            for line in f:
                a, b, c = line.rstrip("\n").split(",")
                ts.append(_parse_ts_ms(a))
                tin.append(int(b))
                tout.append(int(c))
    except (OSError, ValueError) as e:
        raise SimError(f"{path}: cannot read trace: {e}") from e
    t = np.asarray(ts, dtype=np.int64)
    order = np.argsort(t, kind="stable")
    t = t[order]
    return Trace(
        name=name,
        offset_ms=t - t[0],
        tokens_in=np.asarray(tin, dtype=np.int64)[order],
        tokens_out=np.asarray(tout, dtype=np.int64)[order],
    )
