"""Hardening #5: key cardinality is bounded; the long tail folds into ``~other``."""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors.aggregate import factorize_keys
from detectors.config import GovernorConfig
from detectors.governor import Governor
from detectors.keybudget import OTHER, KeyLimits, fold_new_keys
from detectors.layout import KIND_ENDPOINT, KIND_PAIR, KIND_TENANT
from schemas.columns import EventColumns

T0 = 1_763_900_000_000


def events(endpoints: list[str], tenants: list[str], t0: int = T0) -> EventColumns:
    n = len(endpoints)
    return EventColumns.from_arrays({
        "ts_ms": t0 + np.arange(n) * 2_000 // max(n, 1), "latency_ms": np.full(n, 20),
        "endpoint": np.array(endpoints, dtype=object), "tenant": np.array(tenants, dtype=object),
        "event_id": np.array([f"e{i}" for i in range(n)], dtype=object),
    })


def test_fold_arithmetic() -> None:
    lim = KeyLimits(max_endpoints=2, max_tenants=2, max_pairs=3)
    tracked = [(KIND_ENDPOINT, "a", ""), (KIND_TENANT, "", "x"), (KIND_PAIR, "a", "x")]
    f = fold_new_keys(events(["a", "b", "c", "a"], ["x", "y", "z", "y"]), tracked, lim)
    # endpoints: a tracked, b takes the last place, c folds; tenants: x tracked, y admitted, z folds
    assert f.events.endpoint.tolist() == ["a", "b", OTHER, "a"]
    assert f.events.tenant.tolist() == ["x", "y", OTHER, "y"]
    # pairs: (a,x) tracked; (b,y), (a,y) fit (3 at most), (~other, ~other) is always allowed
    assert f.rows == 1
    tight = KeyLimits(max_endpoints=5, max_tenants=5, max_pairs=1)
    g = fold_new_keys(events(["a", "b"], ["x", "y"]), tracked, tight)
    assert g.events.tenant.tolist() == ["x", OTHER] and g.rows == 1  # (b,y): no pair room
    for folded in (f, g):  # the factorization handed to aggregation is the folded columns'
        assert_same_keys(folded.keys, factorize_keys(folded.events))


def assert_same_keys(a: tuple[Any, ...], b: tuple[Any, ...]) -> None:
    assert a[0] == b[0] and a[2] == b[2]
    assert a[1].tolist() == b[1].tolist() and a[3].tolist() == b[3].tolist()


def test_the_folded_factorization_matches_the_folded_columns_for_any_mix() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        ends = [f"e{i}" for i in rng.integers(0, 12, n)]
        tens = [f"t{i}" for i in rng.integers(0, 9, n)]
        tracked = [(KIND_ENDPOINT, f"e{i}", "") for i in range(int(rng.integers(0, 5)))]
        tracked += [(KIND_PAIR, "e0", f"t{i}") for i in range(int(rng.integers(0, 4)))]
        lim = KeyLimits(*(int(x) for x in rng.integers(1, 8, 3)))
        f = fold_new_keys(events(ends, tens), tracked, lim)
        assert_same_keys(f.keys, factorize_keys(f.events))


def test_a_flood_of_random_names_keeps_memory_bounded_and_the_real_keys() -> None:
    lim = KeyLimits(max_endpoints=50, max_tenants=20, max_pairs=100)
    gov = Governor(GovernorConfig(keys=lim))
    real = events(["POST /v1/chat"] * 200, ["acme"] * 200)
    gov.ingest(real)
    gov.advance(T0 + 500)
    rng = np.random.default_rng(0)
    n = 20_000  # 1,000s of random URLs and tenants in 2 s of event time
    flood = events([f"GET /{rng.integers(1 << 40):x}" for _ in range(n)],
                   [f"t{rng.integers(1 << 30)}" for _ in range(n)], T0 + 3_000)
    stats = gov.ingest(flood)
    gov.advance(T0 + 5_500)
    keys = gov._store.keys
    kinds = {k: sum(1 for x in keys if x[0] == k) for k in (KIND_ENDPOINT, KIND_TENANT, KIND_PAIR)}
    assert kinds[KIND_ENDPOINT] <= lim.max_endpoints + 1
    assert kinds[KIND_TENANT] <= lim.max_tenants + 1
    assert kinds[KIND_PAIR] <= lim.max_pairs + 1
    assert (KIND_ENDPOINT, "POST /v1/chat", "") in keys  # the endpoint governed before stays
    assert (KIND_ENDPOINT, OTHER, "") in keys
    assert stats.folded > n * 0.9 and stats.accepted == n  # folded, not dropped


def test_the_index_marks_other_keys_which_no_rule_may_enter_on() -> None:
    from detectors.evaluate import KeyIndex

    keys = [(KIND_ENDPOINT, "a", ""), (KIND_ENDPOINT, OTHER, ""), (KIND_PAIR, "a", OTHER),
            (KIND_TENANT, "", OTHER)]
    idx = KeyIndex.build(keys, 1)
    assert idx.folded.tolist() == [False, True, True, True]
