"""A ``limit`` directive: a concurrency cap enforced by the pure table, parked and woken by the
shell (gateway/enforce.py, gateway/client.py)."""

from __future__ import annotations

import random
import threading

from gateway.enforce import (
    ADMIT_KIND,
    LIFO_AFTER_MS,
    QUEUE_KIND,
    REJECT_KIND,
    DirectiveTable,
    RequestMeta,
)
from schemas.directive import Action, Directive, Reason, Scope

NOW = 1_700_000_000_000
RNG = random.Random(1)


def limit(n: int, *, issued: int = NOW, max_delay_ms: int = 1_000, did: str = "lim") -> Directive:
    return Directive(did, issued, issued + 3_000, Scope(endpoint="llm"),
                     Action("limit", max_inflight=n, max_delay_ms=max_delay_ms,
                            retry_after_ms=250), Reason("overload", 1.0))


def req(prio: int = 0) -> RequestMeta:
    return RequestMeta("llm", "t", "a", prio)


def test_slots_then_queue_then_handed_on_by_priority() -> None:
    t = DirectiveTable("gw")
    t.apply(limit(2), NOW)
    a, b = t.admit(req(), NOW, RNG), t.admit(req(), NOW, RNG)
    assert (a.kind, a.slot) == (ADMIT_KIND, "lim") and b.slot == "lim"
    full = t.admit(req(), NOW, RNG)
    assert full.kind == QUEUE_KIND and full.delay_ms == 1_000 and full.retry_after_ms == 250
    assert t.admit(RequestMeta("other"), NOW, RNG).kind == ADMIT_KIND  # other endpoints: free
    late, urgent = object(), object()
    assert t.enqueue("lim", 7, late, NOW) == [] and t.enqueue("lim", 1, urgent, NOW) == []
    assert t.release(a.slot, NOW) == [urgent]  # the most important waiter first
    assert t.release(b.slot, NOW) == [late]
    assert t.release("lim", NOW) == [] and t.release("lim", NOW) == []  # slots free up
    assert t.admit(req(), NOW, RNG).slot == "lim"


def test_a_waiter_whose_wait_ran_out_is_cancelled() -> None:
    t = DirectiveTable("gw")
    t.apply(limit(1), NOW)
    held = t.admit(req(), NOW, RNG)
    w = object()
    assert t.enqueue("lim", 0, w, NOW) == []
    assert t.cancel("lim", w) and not t.cancel("lim", w)
    assert t.release(held.slot, NOW) == []


def test_raised_released_or_expired_limits_let_waiters_go() -> None:
    t = DirectiveTable("gw")
    t.apply(limit(1), NOW)
    t.admit(req(), NOW, RNG)
    w1, w2, w3 = object(), object(), object()
    for w in (w1, w2, w3):
        assert t.enqueue("lim", 0, w, NOW) == []
    t.apply(limit(2, issued=NOW + 10), NOW + 10)  # a refresh that raises the cap
    assert t.pump(NOW + 10) == [(w1, "lim")]
    t.apply(Directive("lim", NOW + 20, NOW + 20, Scope(endpoint="llm"), Action("release"),
                      Reason("overload", 0.0)), NOW + 20)
    assert t.pump(NOW + 20) == [(w2, ""), (w3, "")]  # the limit is gone: fail open
    assert t.enqueue("lim", 0, object(), NOW) is None  # nothing to wait for: admit


def test_a_slot_freed_between_the_decision_and_the_queueing_is_granted_at_once() -> None:
    # another thread completes its request after this one was told "queue" but before it
    # queued: the waiter must not wait for a slot that is already free
    t = DirectiveTable("gw")
    t.apply(limit(1), NOW)
    held = t.admit(req(), NOW, RNG)
    assert t.admit(req(), NOW, RNG).kind == QUEUE_KIND
    assert t.release(held.slot, NOW) == []  # nobody waits yet: the slot is simply free
    w = object()
    assert t.enqueue("lim", 0, w, NOW) == [w]
    assert t.admit(req(), NOW, RNG).kind == QUEUE_KIND  # w holds the one slot


def test_a_standing_queue_serves_the_newest_waiter_first() -> None:
    # first come first served while the queue moves; once the oldest waiter of a priority has
    # waited half of max_delay_ms (1 s here), the newest goes first: its client has the most
    # patience left, while the oldest would reach the service with almost none
    t = DirectiveTable("gw")
    t.apply(limit(1), NOW)
    held = t.admit(req(), NOW, RNG)
    old, mid, new, lesser = object(), object(), object(), object()
    assert t.enqueue("lim", 0, old, NOW) == []
    assert t.enqueue("lim", 0, mid, NOW + 100) == []
    assert t.release(held.slot, NOW + 499) == [old]  # waited 499 ms: first come
    assert t.enqueue("lim", 0, new, NOW + 600) == []
    assert t.enqueue("lim", 5, lesser, NOW + 600) == []
    assert t.release("lim", NOW + 600) == [new]  # mid waited 500 ms: newest first
    assert t.release("lim", NOW + 700) == [mid]
    assert t.release("lim", NOW + 800) == [lesser]  # a less important priority still waits last
    # a long budget (30 s): a queue standing for LIFO_AFTER_MS (5 s) is not a burst draining
    t = DirectiveTable("gw")
    t.apply(limit(1, max_delay_ms=30_000, did="long"), NOW)
    held = t.admit(req(), NOW, RNG)
    first, second, third = object(), object(), object()
    for i, w in enumerate((first, second, third)):
        assert t.enqueue("long", 0, w, NOW + i) == []
    assert t.release(held.slot, NOW + LIFO_AFTER_MS - 1) == [first]
    assert t.release("long", NOW + LIFO_AFTER_MS + 1) == [third]


def test_a_zero_wait_limit_rejects_at_once() -> None:
    t = DirectiveTable("gw")
    t.apply(limit(1, max_delay_ms=0), NOW)
    t.admit(req(), NOW, RNG)
    assert t.admit(req(), NOW, RNG).kind == REJECT_KIND


def test_gateway_parks_requests_and_wakes_them_in_order() -> None:
    from flyball.settings import load_settings
    from gateway.client import Gateway

    clock = [NOW]
    gw = Gateway(load_settings(kafka_bootstrap="127.0.0.1:1", allow_unsigned=True), "gw",
                 control=False, clock_ms=lambda: clock[0])
    gw.apply_directive(limit(1, max_delay_ms=5_000))
    first = gw.admit("llm")
    assert first.slot == "lim"
    got: list[str] = []

    def wait() -> None:
        d = gw.wait_slot(gw.admit("llm"))
        got.append(d.kind + ":" + d.slot)
        gw.done(d)

    th = threading.Thread(target=wait)
    th.start()
    th.join(0.2)
    assert th.is_alive() and got == []  # parked: the one slot is taken
    gw.done(first)
    th.join(5)
    assert got == ["admit:lim"]
    # a wait that runs out is a rejection with the limit's retry-after
    gw.apply_directive(limit(1, max_delay_ms=50, issued=NOW + 1))
    held = gw.admit("llm")
    d = gw.wait_slot(gw.admit("llm"))
    assert (d.kind, d.retry_after_ms) == (REJECT_KIND, 250)
    gw.done(held)
