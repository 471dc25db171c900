"""One batch of events -> open per-(bucket, key) aggregates, vectorized (nothing per event in
Python but one dict lookup per string: strings are factorized by hashing, not sorting).

Every event counts under three keys: its endpoint ``(E, endpoint, "")``, its endpoint x tenant
``(P, endpoint, tenant)`` and its tenant across endpoints ``(T, "", tenant)``. A second, small
aggregate counts attempts per ``(endpoint, tenant, gateway)`` to apportion throttle shares.

Events are first reduced to *fine* groups, one per (bucket, endpoint, tenant) (integer
``bincount``s, no per-event Python), and the three key kinds are sums/maxima of fine groups. The
result is identical to a direct per-event ``np.add.at``; only the work differs.
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
    N_LATENCY_BINS,
    N_MAX,
    N_PRIORITIES,
    N_SUM,
    OK_LATENCY_SUM_MS,
    PRIO0,
    REJECTED,
    RETRIES,
    ROOT_INTENTS,
    ROOT_SUCCESSES,
    SUB_REQUESTS,
    SUCCESSES,
    THROTTLED,
    TIMEOUT_LATENCY_SUM_MS,
    TIMEOUTS,
    TOKENS,
    U8,
    latency_bins,
)
from detectors.windows import Key, Partial
from schemas.columns import (
    APPLIED_CODES,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_REJECTED,
    STATUS_TIMEOUT,
    EventColumns,
)

Obj = npt.NDArray[np.object_]
_APPLIED_THROTTLE = APPLIED_CODES["throttle"]


def event_time_ms(events: EventColumns, basis: str) -> I64:
    """Event time used for windows: attempt completion (``ts + latency``) or attempt start."""
    ts = events.ts_ms.astype(np.int64)
    return ts + events.latency_ms.astype(np.int64) if basis == "completion" else ts


def factorize(values: Obj) -> tuple[list[str], I64]:
    """(sorted distinct values, index of each value among them): ``np.unique(values,
    return_inverse=True)`` for strings, by hashing (two C-level passes) instead of sorting n Python
    strings; only the few distinct values are sorted."""
    lst = values.tolist()
    uniq = sorted(dict.fromkeys(lst))
    pos = {v: i for i, v in enumerate(uniq)}
    return uniq, np.fromiter(map(pos.__getitem__, lst), dtype=np.int64, count=len(lst))


def _dense_ok(span: int, n: int) -> bool:
    return span <= 4 * n + 4096


def _group(bucket: I64, key_idx: I64, n_keys: int) -> tuple[I64, I64, I64]:
    """Unique (bucket, key) groups: (group bucket, group key index, inverse per row).

    Groups are sorted by (bucket, key), as ``np.unique`` of the combined code would give; a dense
    presence table replaces the sort when the code range is small (the common case).
    """
    b0 = int(bucket.min())
    code = (bucket - b0) * n_keys + key_idx
    span = (int(bucket.max()) - b0 + 1) * n_keys
    if _dense_ok(span, code.shape[0]):
        present = np.zeros(span, dtype=bool)
        present[code] = True
        uniq = np.flatnonzero(present)
        lookup = np.empty(span, dtype=np.int64)
        lookup[uniq] = np.arange(uniq.shape[0])
        inverse = lookup[code]
    else:
        uniq, inverse = np.unique(code, return_inverse=True)
    return uniq // n_keys + b0, uniq % n_keys, inverse.reshape(-1)


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
    out[:, ROOT_SUCCESSES] = (status == STATUS_OK) & (depth == 0)
    out[:, LATENCY_SUM_MS] = np.where(ran, lat, 0)
    out[:, LATENCY_COUNT] = ran
    out[:, OK_LATENCY_SUM_MS] = np.where(status == STATUS_OK, lat, 0)
    out[:, TIMEOUT_LATENCY_SUM_MS] = np.where(status == STATUS_TIMEOUT, lat, 0)
    out[:, THROTTLED] = events.applied == _APPLIED_THROTTLE
    out[:, DEPTH_SUM] = np.where(first, depth, 0)
    out[:, TOKENS] = events.tokens_in.astype(np.int64) + events.tokens_out.astype(np.int64)
    rows = np.arange(n)
    out[rows, HIST0 + latency_bins(lat)] = status == STATUS_OK
    prio = np.clip(events.priority.astype(np.int64), 0, N_PRIORITIES - 1)
    out[rows, PRIO0 + prio] = 1
    return out


def group_sums(events: EventColumns, inv: I64, g: int) -> I64:
    """(g, N_SUM) sums of ``event_columns_matrix(events)`` rows per group ``inv`` (exact integer
    counts with ``bincount``, integer-valued sums with a 1-D ``np.add.at``)."""
    out = np.zeros((g, N_SUM), dtype=np.int64)
    status = events.status
    attempt = events.attempt.astype(np.int64)
    depth = events.depth.astype(np.int64)
    first = attempt == 0
    ran = status != STATUS_REJECTED
    lat = np.maximum(events.latency_ms.astype(np.int64), 0)

    def count(mask: npt.NDArray[np.bool_]) -> I64:
        return np.bincount(inv[mask], minlength=g)

    def total(col: int, values: I64) -> None:
        np.add.at(out[:, col], inv, values)

    out[:, ATTEMPTS] = np.bincount(inv, minlength=g)
    out[:, FIRST_ATTEMPTS] = count(first)
    out[:, RETRIES] = out[:, ATTEMPTS] - out[:, FIRST_ATTEMPTS]
    out[:, SUCCESSES] = count(status == STATUS_OK)
    out[:, ERRORS] = count(status == STATUS_ERROR)
    out[:, TIMEOUTS] = count(status == STATUS_TIMEOUT)
    out[:, LATENCY_COUNT] = count(ran)
    out[:, REJECTED] = out[:, ATTEMPTS] - out[:, LATENCY_COUNT]
    out[:, ROOT_INTENTS] = count(first & (depth == 0))
    out[:, SUB_REQUESTS] = count(first & (depth > 0))
    out[:, ROOT_SUCCESSES] = count((status == STATUS_OK) & (depth == 0))
    out[:, THROTTLED] = count(events.applied == _APPLIED_THROTTLE)
    total(LATENCY_SUM_MS, np.where(ran, lat, 0))
    total(OK_LATENCY_SUM_MS, np.where(status == STATUS_OK, lat, 0))
    total(TIMEOUT_LATENCY_SUM_MS, np.where(status == STATUS_TIMEOUT, lat, 0))
    total(DEPTH_SUM, np.where(first, depth, 0))
    total(TOKENS, events.tokens_in.astype(np.int64) + events.tokens_out.astype(np.int64))
    nb = N_LATENCY_BINS
    out[:, HIST0 : HIST0 + nb] = np.bincount(
        (inv * nb + latency_bins(lat))[status == STATUS_OK], minlength=g * nb
    ).reshape(g, nb)
    prio = np.clip(events.priority.astype(np.int64), 0, N_PRIORITIES - 1)
    out[:, PRIO0 : PRIO0 + N_PRIORITIES] = np.bincount(
        inv * N_PRIORITIES + prio, minlength=g * N_PRIORITIES
    ).reshape(g, N_PRIORITIES)
    return out


def _add_rows(out: I64, inv: I64, values: I64) -> None:
    """``np.add.at(out, inv, values)`` for 2-D rows, as one fast 1-D ``np.add.at``."""
    c = out.shape[1]
    flat = (inv[:, None] * c + np.arange(c)).reshape(-1)
    np.add.at(out.reshape(-1), flat, values.reshape(-1))


def _max_rows(out: U8, inv: I64, values: U8) -> None:
    """``np.maximum.at(out, inv, values)`` for 2-D rows, as one fast 1-D ``np.maximum.at``."""
    c = out.shape[1]
    flat = (inv[:, None] * c + np.arange(c)).reshape(-1)
    np.maximum.at(out.reshape(-1), flat, values.reshape(-1))


def aggregate(events: EventColumns, bucket: I64) -> Partial:
    """Open aggregates of ``events`` (already filtered to non-late) in their ``bucket``."""
    if len(events) == 0:
        return Partial(N_SUM, N_MAX, HLL_M)
    ue, ie = factorize(events.endpoint)
    ut, it = factorize(events.tenant)
    return _aggregate(events, bucket, ue, ie, ut, it)


# (sorted endpoints, each event's endpoint index, sorted tenants, each event's tenant index)
Factorized = tuple[list[str], I64, list[str], I64]


def factorize_keys(events: EventColumns) -> Factorized:
    ue, ie = factorize(events.endpoint)
    ut, it = factorize(events.tenant)
    return ue, ie, ut, it


def aggregate_both(
    events: EventColumns, bucket: I64, factorized: Factorized | None = None
) -> tuple[Partial, Partial]:
    """``(aggregate(events, bucket), aggregate_gateways(events, bucket))``, factorizing the shared
    string columns once (or not at all: ``factorized``, from ``factorize_keys`` of ``events``)."""
    if len(events) == 0:
        return Partial(N_SUM, N_MAX, HLL_M), Partial(1, 0, 0)
    ue, ie, ut, it = factorized if factorized is not None else factorize_keys(events)
    return (
        _aggregate(events, bucket, ue, ie, ut, it),
        _aggregate_gateways(events, bucket, ue, ie, ut, it),
    )


def _aggregate(
    events: EventColumns, bucket: I64, ue: list[str], ie: I64, ut: list[str], it: I64
) -> Partial:
    ne, nt = len(ue), len(ut)
    # fine groups: one per (bucket, endpoint x tenant), sorted
    fb, fpc, finv = _group(bucket, ie * nt + it, ne * nt)
    n_fine = fb.shape[0]
    fine_sums = group_sums(events, finv, n_fine)
    fine_max = np.zeros(n_fine, dtype=np.int64)
    np.maximum.at(fine_max, finv, events.depth.astype(np.int64))
    reg_idx, rank = hll.register_of(events.agent_id)
    fine_regs = np.zeros(n_fine * HLL_M, dtype=np.uint8)
    np.maximum.at(fine_regs, finv * HLL_M + reg_idx, rank.astype(np.uint8))
    # keys: endpoints, the endpoint x tenant pairs present, tenants (as ``_keys3``)
    up = np.unique(fpc)
    keys: list[Key] = [(KIND_ENDPOINT, e, "") for e in ue]
    keys += [(KIND_PAIR, ue[c // nt], ut[c % nt]) for c in up.tolist()]
    keys += [(KIND_TENANT, "", t) for t in ut]
    n_p = up.shape[0]
    kidx = np.concatenate([fpc // nt, ne + np.searchsorted(up, fpc), ne + n_p + fpc % nt])
    rows = np.tile(np.arange(n_fine), 3)
    gb, gk, inv = _group(np.tile(fb, 3), kidx, len(keys))
    g = gb.shape[0]
    sums = np.zeros((g, N_SUM), dtype=np.int64)
    _add_rows(sums, inv, fine_sums[rows])
    maxes = np.zeros((g, N_MAX), dtype=np.int64)
    depth_max = np.zeros(g, dtype=np.int64)
    np.maximum.at(depth_max, inv, fine_max[rows])
    maxes[:, DEPTH_MAX] = depth_max
    regs = np.zeros((g, HLL_M), dtype=np.uint8)
    _max_rows(regs, inv, fine_regs.reshape(n_fine, HLL_M)[rows])
    return Partial(N_SUM, N_MAX, HLL_M, keys, gb, gk, sums, maxes, regs)


def aggregate_gateways(events: EventColumns, bucket: I64) -> Partial:
    """Attempts per (endpoint, tenant, gateway) and bucket."""
    if len(events) == 0:
        return Partial(1, 0, 0)
    ue, ie = factorize(events.endpoint)
    ut, it = factorize(events.tenant)
    return _aggregate_gateways(events, bucket, ue, ie, ut, it)


def _aggregate_gateways(
    events: EventColumns, bucket: I64, ue: list[str], ie: I64, ut: list[str], it: I64
) -> Partial:
    ug, ig = factorize(events.gateway_id)
    nt, ng = len(ut), len(ug)
    n_codes = len(ue) * nt * ng
    # (bucket, code) groups sorted by code are sorted by key index: the keys are the codes present
    gb, gcode, inv = _group(bucket, (ie * nt + it) * ng + ig, n_codes)
    ucode, gk = np.unique(gcode, return_inverse=True)
    keys: list[Key] = [(ue[c // (nt * ng)], ut[(c // ng) % nt], ug[c % ng]) for c in ucode.tolist()]
    sums = np.bincount(inv, minlength=gb.shape[0]).astype(np.int64).reshape(-1, 1)
    return Partial(1, 0, 0, keys, gb, gk.reshape(-1).astype(np.int64), sums)
