"""A hard bound on the keys the governor tracks: the long tail folds into ``~other``.

Every key (endpoint, endpoint x tenant, tenant) costs a ring of buckets for its whole memory
(``detectors.windows``), so a client that sends random URLs (or random tenant names) could grow
the worker without bound. The budget admits a new key while its kind has room (``KeyLimits``) and
folds the events of any other new key into the key ``~other`` of that kind, which always exists.
Keys already tracked keep their rows: a flood of new names cannot push out the endpoints being
governed. A key leaves the store once its whole memory holds no data (``WindowStore.evict``),
which frees its place, so the tracked keys are the ones with traffic in the last memory (60 s),
first come first served; with the bound reached, names first seen during a flood fold until
older ones age out. Folding depends on arrival order only when the bound is reached.

Memory is then bounded by ``(max_endpoints + max_tenants + max_pairs + 3) x`` the bytes per key
(``flyball bench keys`` measures it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

import numpy as np

from detectors.aggregate import Factorized, factorize_keys
from detectors.errors import ConfigError
from detectors.layout import KIND_ENDPOINT, KIND_PAIR, KIND_TENANT
from detectors.windows import Key
from schemas.columns import EventColumns

OTHER: Final = "~other"


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """Distinct keys tracked at once, per kind (the ``~other`` keys are extra). The defaults
    bound the window store at about 1,000 keys, about 350 MB (``flyball bench keys``: a key costs
    about 0.35 MB, its 60 s ring of 100 ms buckets); raise them for more route templates."""

    max_endpoints: int = 200
    max_tenants: int = 200
    max_pairs: int = 600

    def __post_init__(self) -> None:
        for name in ("max_endpoints", "max_tenants", "max_pairs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"KeyLimits.{name} must be >= 1")


@dataclass(frozen=True, slots=True)
class Folded:
    events: EventColumns
    rows: int  # events whose endpoint or tenant was folded into ``~other``
    keys: Factorized  # ``factorize_keys(events)``, already computed: aggregation reuses it


def fold_new_keys(events: EventColumns, tracked: list[Key], limits: KeyLimits) -> Folded:
    """``events`` with the names of new keys beyond the limits replaced by ``~other``.

    ``tracked``: the keys the store holds now (in any order)."""
    keys = factorize_keys(events)
    if len(events) == 0:
        return Folded(events, 0, keys)
    have: dict[str, set[tuple[str, str]]] = {KIND_ENDPOINT: set(), KIND_TENANT: set(),
                                            KIND_PAIR: set()}
    for kind, e, t in tracked:
        have[kind].add((e, t))
    ue, ie, ut, it = keys
    e_names = _admit(ue, {e for e, _ in have[KIND_ENDPOINT]}, limits.max_endpoints)
    t_names = _admit(ut, {t for _, t in have[KIND_TENANT]}, limits.max_tenants)
    endpoint = e_names[ie]
    tenant = t_names[it]
    # pairs: a new (endpoint, tenant) beyond the limit keeps its endpoint, its tenant folds
    pairs = have[KIND_PAIR]
    room = limits.max_pairs - sum(1 for p in pairs if OTHER not in p)
    codes = ie * len(ut) + it
    fold_tenant = np.zeros(len(events), dtype=bool)
    for c in np.unique(codes).tolist():
        e, t = str(e_names[c // len(ut)]), str(t_names[c % len(ut)])
        if (e, t) in pairs or OTHER in (e, t):
            continue
        if room > 0:
            pairs.add((e, t))
            room -= 1
        else:
            fold_tenant |= codes == c
    folded_e = e_names != np.array(ue, dtype=object)
    folded_t = t_names != np.array(ut, dtype=object)
    changed = folded_e[ie] | folded_t[it] | fold_tenant
    n = int(np.count_nonzero(changed))
    if n == 0:
        return Folded(events, 0, keys)
    if fold_tenant.any():
        tenant = np.where(fold_tenant, OTHER, tenant)
    # the folded columns' factorization, from the distinct names (few) and the codes
    ue2, e_code = _refactor(e_names.tolist())
    ut2, t_code = _refactor([*t_names.tolist(), OTHER])
    it2 = np.where(fold_tenant, t_code[-1], t_code[:-1][it])
    ut_used, it3 = np.unique(it2, return_inverse=True)  # drop ~other if nothing folded into it
    keys = (ue2, e_code[ie], [ut2[i] for i in ut_used.tolist()], it3.astype(np.int64))
    return Folded(replace(events, endpoint=endpoint, tenant=tenant), n, keys)


def _refactor(names: list[str]) -> tuple[list[str], np.ndarray]:
    """(sorted distinct ``names``, each name's index among them)."""
    uniq = sorted(set(names))
    pos = {v: i for i, v in enumerate(uniq)}
    return uniq, np.array([pos[v] for v in names], dtype=np.int64)


def _admit(names: list[str], tracked: set[str], limit: int) -> np.ndarray:
    """The name each distinct value keeps: itself if tracked or if there is room, else
    ``~other`` (room is taken in sorted-name order within a batch: deterministic)."""
    room = limit - len(tracked - {OTHER})
    out = np.empty(len(names), dtype=object)
    for i, name in enumerate(names):
        if name in tracked or name == OTHER:
            out[i] = name
        elif room > 0:
            out[i] = name
            room -= 1
        else:
            out[i] = OTHER
    return out
