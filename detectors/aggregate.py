"""One batch of events -> open per-(bucket, key) aggregates, vectorized (nothing per event in
Python: strings are factorized with ``np.unique``, sums use ``np.add.at``).

Every event counts under three keys: its endpoint ``(E, endpoint, "")``, its endpoint x tenant
``(P, endpoint, tenant)`` and its tenant across endpoints ``(T, "", tenant)``. A second, small
aggregate counts attempts per ``(endpoint, tenant, gateway)`` to apportion throttle shares.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detectors import hll
from detectors.layout import (
    ATTEMPTS,
    DEPTH_MAX,
    DEPTH_SUM,
    ERRORS,
    FIRST_ATTEMPTS,
    HIST0,
    HLL_M,
    I64,
    KIND_ENDPOINT,
    KIND_PAIR,
    KIND_TENANT,
    LATENCY_COUNT,
    LATENCY_SUM_MS,
    N_MAX,
    N_PRIORITIES,
    N_SUM,
    PRIO0,
    REJECTED,
    RETRIES,
    ROOT_INTENTS,
    SUB_REQUESTS,
    SUCCESSES,
    TIMEOUTS,
    TOKENS,
    latency_bins,
)
from detectors.windows import Key, Partial
from schemas.columns import (
    STATUS_ERROR,
    STATUS_OK,
    STATUS_REJECTED,
    STATUS_TIMEOUT,
    EventColumns,
)

Obj = npt.NDArray[np.object_]


def event_time_ms(events: EventColumns, basis: str) -> I64:
    """Event time used for windows: attempt completion (``ts + latency``) or attempt start."""
    ts = events.ts_ms.astype(np.int64)
    return ts + events.latency_ms.astype(np.int64) if basis == "completion" else ts


def _group(bucket: I64, key_idx: I64, n_keys: int) -> tuple[I64, I64, I64]:
    """Unique (bucket, key) groups: (group bucket, group key index, inverse per row)."""
    b0 = int(bucket.min())
    code = (bucket - b0) * n_keys + key_idx
    uniq, inverse = np.unique(code, return_inverse=True)
    return uniq // n_keys + b0, uniq % n_keys, inverse.reshape(-1)


def _keys3(endpoint: Obj, tenant: Obj) -> tuple[list[Key], I64]:
    """Key list and a (3, n) array of key indices: endpoint, endpoint x tenant, tenant."""
    ue, ie = np.unique(endpoint, return_inverse=True)
    ut, it = np.unique(tenant, return_inverse=True)
    ie, it = ie.reshape(-1).astype(np.int64), it.reshape(-1).astype(np.int64)
    up, ip = np.unique(ie * len(ut) + it, return_inverse=True)
    ue_l, ut_l = ue.tolist(), ut.tolist()
    keys: list[Key] = [(KIND_ENDPOINT, e, "") for e in ue_l]
    keys += [(KIND_PAIR, ue_l[int(c) // len(ut_l)], ut_l[int(c) % len(ut_l)]) for c in up]
    keys += [(KIND_TENANT, "", t) for t in ut_l]
    n_e, n_p = len(ue_l), len(up)
    return keys, np.stack([ie, n_e + ip.reshape(-1), n_e + n_p + it])


def event_columns_matrix(events: EventColumns) -> I64:
    """(n, N_SUM) integer contributions of each event to the bucket sums."""
    n = len(events)
    out = np.zeros((n, N_SUM), dtype=np.int64)
    status = events.status
    attempt = events.attempt.astype(np.int64)
    depth = events.depth.astype(np.int64)
    first = attempt == 0
    ran = status != STATUS_REJECTED
    lat = np.maximum(events.latency_ms.astype(np.int64), 0)
    out[:, ATTEMPTS] = 1
    out[:, FIRST_ATTEMPTS] = first
    out[:, RETRIES] = ~first
    out[:, SUCCESSES] = status == STATUS_OK
    out[:, ERRORS] = status == STATUS_ERROR
    out[:, TIMEOUTS] = status == STATUS_TIMEOUT
    out[:, REJECTED] = ~ran
    out[:, ROOT_INTENTS] = first & (depth == 0)
    out[:, SUB_REQUESTS] = first & (depth > 0)
    out[:, LATENCY_SUM_MS] = np.where(ran, lat, 0)
    out[:, LATENCY_COUNT] = ran
    out[:, DEPTH_SUM] = np.where(first, depth, 0)
    out[:, TOKENS] = events.tokens_in.astype(np.int64) + events.tokens_out.astype(np.int64)
    rows = np.arange(n)
    out[rows, HIST0 + latency_bins(lat)] = ran
    prio = np.clip(events.priority.astype(np.int64), 0, N_PRIORITIES - 1)
    out[rows, PRIO0 + prio] = 1
    return out


def aggregate(events: EventColumns, bucket: I64) -> Partial:
    """Open aggregates of ``events`` (already filtered to non-late) in their ``bucket``."""
    if len(events) == 0:
        return Partial(N_SUM, N_MAX, HLL_M)
    keys, kidx = _keys3(events.endpoint, events.tenant)
    n = len(events)
    rows = np.tile(np.arange(n), 3)
    gb, gk, inv = _group(np.tile(bucket, 3), kidx.reshape(-1), len(keys))
    g = gb.shape[0]
    contrib = event_columns_matrix(events)
    sums = np.zeros((g, N_SUM), dtype=np.int64)
    np.add.at(sums, inv, contrib[rows])
    maxes = np.zeros((g, N_MAX), dtype=np.int64)
    np.maximum.at(maxes[:, DEPTH_MAX], inv, events.depth.astype(np.int64)[rows])
    reg_idx, rank = hll.register_of(events.agent_id)
    regs = np.zeros((g, HLL_M), dtype=np.uint8)
    np.maximum.at(regs, (inv, reg_idx[rows]), rank[rows].astype(np.uint8))
    return Partial(N_SUM, N_MAX, HLL_M, keys, gb, gk, sums, maxes, regs)


def aggregate_gateways(events: EventColumns, bucket: I64) -> Partial:
    """Attempts per (endpoint, tenant, gateway) and bucket."""
    if len(events) == 0:
        return Partial(1, 0, 0)
    ue, ie = np.unique(events.endpoint, return_inverse=True)
    ut, it = np.unique(events.tenant, return_inverse=True)
    ug, ig = np.unique(events.gateway_id, return_inverse=True)
    nt, ng = len(ut), len(ug)
    code = (ie.reshape(-1).astype(np.int64) * nt + it.reshape(-1)) * ng + ig.reshape(-1)
    ucode, kidx = np.unique(code, return_inverse=True)
    ue_l, ut_l, ug_l = ue.tolist(), ut.tolist(), ug.tolist()
    keys: list[Key] = [
        (ue_l[int(c) // (nt * ng)], ut_l[(int(c) // ng) % nt], ug_l[int(c) % ng]) for c in ucode
    ]
    gb, gk, inv = _group(bucket, kidx.reshape(-1).astype(np.int64), len(keys))
    sums = np.zeros((gb.shape[0], 1), dtype=np.int64)
    np.add.at(sums[:, 0], inv, 1)
    return Partial(1, 0, 0, keys, gb, gk, sums)
