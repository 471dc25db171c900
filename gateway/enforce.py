"""The enforcement core: which directives are in force, and what to do with one request.

Pure: no I/O, no clock, no global randomness. ``now_ms`` (epoch milliseconds, the governor's
``expires_ms`` clock) and a random source (anything with ``random() -> float`` in [0, 1):
``random.Random`` or ``numpy.random.Generator``) are passed in, so the simulator runs the same code
in virtual time and tests are exact.

Semantics of a table with several directives:

- Every directive whose scope matches a request constrains it. Matching directives are walked
  most specific first (``Scope.specificity()``: agent > tenant > endpoint > filters; ties by id).
- ``throttle``: a token bucket per directive, refilled at ``rate_per_s × share`` tokens/s up to
  ``burst × share`` tokens (at least 1). An empty bucket rejects with the time until the next token.
  With ``max_delay_ms`` > 0 it paces instead (GCRA, a bounded queue at the gateway): a request
  whose token is due within ``max_delay_ms`` reserves it (the level goes negative) and is deferred
  until then, so held requests leave at the rate; beyond that it is rejected.
- ``shed``: rejects with probability ``fraction``, ``Retry-After = retry_after_ms``.
- ``reroute``: sends the request to ``target``.
- ``defer``: holds the request ``hold_ms + U{0..jitter_ms}`` ms (the most specific defer decides).
- ``limit``: a concurrency cap (the most specific matching limit decides; others are not walked).
  With a free slot and nobody waiting, the request is admitted holding a slot (``Decision.slot``:
  the caller must ``release`` it when the request completes or its client gives up). Otherwise the
  decision is ``"queue"``: the caller ``enqueue``s a waiter object and parks the request at most
  ``delay_ms``; ``release`` (a slot freed) and ``pump`` (a limit raised, released or expired) hand
  slots to waiters, most important priority first, then first come while the queue moves: once
  the oldest waiter of that priority has waited half of ``max_delay_ms`` (at most
  ``LIFO_AFTER_MS``, 5 s), newest first (adaptive LIFO: a standing queue serves requests whose
  clients have the most of their patience left, and the oldest run out their wait instead of
  every admitted request arriving at its service almost out of time). A waiter whose wait ran
  out is ``cancel``led and rejected with ``retry_after_ms``. The table holds no threads or
  timers: the shell (``Gateway``, the simulator) parks and wakes requests.
- The first reject or reroute ends the walk and decides. Otherwise the request is deferred (the
  longest of a pacing throttle's wait and the most specific defer's hold) or admitted, and only
  then does it take one token from every throttle it passed, so
  a request rejected by a less specific directive does not use up a more specific one's tokens.
- ``release`` removes the directive with the same id; a directive at or past ``expires_ms`` stops
  applying (and is purged lazily); an older ``issued_ms`` than the one in force is ignored.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final, NamedTuple, Protocol

from schemas.columns import APPLIED_CODES
from schemas.directive import Directive

_NEVER: Final = 2**62
_TOKEN: Final = 1000.0  # milli-tokens per token


class RandomSource(Protocol):
    def random(self) -> float: ...


class RequestMeta:
    """What the enforcement core needs to know about one request attempt."""

    __slots__ = ("agent_id", "attempt", "depth", "endpoint", "priority", "tenant")

    def __init__(
        self,
        endpoint: str,
        tenant: str = "",
        agent_id: str = "",
        priority: int = 0,
        attempt: int = 0,
        depth: int = 0,
    ) -> None:
        self.endpoint = endpoint
        self.tenant = tenant
        self.agent_id = agent_id
        self.priority = priority
        self.attempt = attempt
        self.depth = depth

    def __repr__(self) -> str:
        return (
            f"RequestMeta({self.endpoint!r}, tenant={self.tenant!r}, agent_id={self.agent_id!r}, "
            f"priority={self.priority}, attempt={self.attempt}, depth={self.depth})"
        )


ADMIT_KIND: Final = "admit"
DEFER_KIND: Final = "defer"
REJECT_KIND: Final = "reject"
REROUTE_KIND: Final = "reroute"
QUEUE_KIND: Final = "queue"


class Decision(NamedTuple):
    """The outcome for one request (immutable; a tuple, so cheap to build and compare).

    - ``kind``: ``"admit"`` / ``"defer"`` / ``"reject"`` / ``"reroute"``.
    - ``delay_ms``: how long to hold the request (defer).
    - ``retry_after_ms``: what to tell the caller (reject).
    - ``target``: where to send the request (reroute).
    - ``directive_id`` / ``applied``: the directive that decided and its action code
      (``schemas.columns.APPLIED_CODES``), for the request event. A request that waits for a
      ``limit`` slot is recorded as ``throttle`` (a concurrency throttle).
    - ``slot``: the id of the ``limit`` whose slot the admitted request holds ("" for none);
      ``queue``: no slot was free, wait at most ``delay_ms`` (``enqueue``), then reject with
      ``retry_after_ms``.
    """

    kind: str
    delay_ms: int = 0
    retry_after_ms: int = 0
    target: str = ""
    directive_id: str = ""
    applied: int = 0
    slot: str = ""

    @property
    def admitted(self) -> bool:
        """True when the request goes ahead here (admit, or defer then go)."""
        return self.kind == ADMIT_KIND or self.kind == DEFER_KIND


ADMIT: Final = Decision(ADMIT_KIND)

_THROTTLE: Final = APPLIED_CODES["throttle"]
_DEFER: Final = APPLIED_CODES["defer"]
_SHED: Final = APPLIED_CODES["shed"]
_REROUTE: Final = APPLIED_CODES["reroute"]
LIFO_AFTER_MS: Final = 5_000
"""A limit's queue that has stood this long (or half of its ``max_delay_ms``, if less) is not a
burst draining: its waiters are then served newest first."""
_LIMIT: Final = -1  # an op code of its own: a limit is applied (recorded) as a throttle


class _Entry:
    """One directive in force, flattened for the admit loop (plus its token bucket)."""

    __slots__ = (
        "agent_id",
        "burst",
        "directive",
        "expires_ms",
        "fraction",
        "hold_ms",
        "id",
        "inflight",
        "issued_ms",
        "jitter_ms",
        "last_ms",
        "max_delay_ms",
        "min_attempt",
        "min_depth",
        "min_priority",
        "n_waiting",
        "op",
        "rate_per_ms",
        "reroute",
        "retry_after_ms",
        "slots",
        "tenant",
        "tokens",
        "waiting",
    )

    def __init__(self, d: Directive, share: float, now_ms: int) -> None:
        s, a = d.scope, d.action
        self.directive = d
        self.id = d.id
        self.issued_ms = d.issued_ms
        self.expires_ms = d.expires_ms
        self.tenant = s.tenant
        self.agent_id = s.agent_id
        self.min_priority = s.min_priority or 0
        self.min_attempt = s.min_attempt or 0
        self.min_depth = s.min_depth or 0
        self.op = _LIMIT if a.type == "limit" else APPLIED_CODES[a.type]
        # Bucket level in milli-tokens: one ms adds ``rate_per_s × share`` of them, so the
        # arithmetic is exact for integral (and dyadic) rates.
        self.rate_per_ms = a.rate_per_s * share
        self.burst = max(_TOKEN, a.burst * share * _TOKEN)
        self.max_delay_ms = a.max_delay_ms
        self.tokens = self.burst
        self.last_ms = now_ms
        self.hold_ms = a.hold_ms
        self.jitter_ms = a.jitter_ms
        self.fraction = a.fraction
        self.retry_after_ms = a.retry_after_ms
        # limit: this gateway's slots, the requests holding one, and the waiters: per priority a
        # queue of (enqueued at ms, waiter), oldest first
        self.slots = max(1, round(a.max_inflight * share))
        self.inflight = 0
        self.waiting: dict[int, deque[tuple[int, object]]] = {}
        self.n_waiting = 0
        self.reroute = (
            Decision(REROUTE_KIND, target=a.target, directive_id=d.id, applied=_REROUTE)
            if a.type == "reroute"
            else ADMIT
        )

    def grant(self, out: list[object], now_ms: int) -> None:
        """Hand free slots to waiters (into ``out``): best priority first; within it the oldest
        while it has waited less than half of ``max_delay_ms`` (at most ``LIFO_AFTER_MS``), else
        the newest."""
        lifo_after_ms = min(self.max_delay_ms // 2, LIFO_AFTER_MS)
        while self.n_waiting and self.inflight < self.slots:
            q = self.waiting[min(p for p, q in self.waiting.items() if q)]
            _, w = q.pop() if now_ms - q[0][0] >= lifo_after_ms else q.popleft()
            out.append(w)
            self.n_waiting -= 1
            self.inflight += 1

    def take_waiting(self) -> list[object]:
        """Every waiter, best priority first, then first come; the queue is left empty."""
        out = [w for p in sorted(self.waiting) for _, w in self.waiting[p]]
        self.waiting, self.n_waiting = {}, 0
        return out

    def refill(self, now_ms: int) -> float:
        dt = now_ms - self.last_ms
        if dt > 0:
            t = self.tokens + dt * self.rate_per_ms
            self.tokens = t if t < self.burst else self.burst
            self.last_ms = now_ms
        return self.tokens


def _order(e: _Entry) -> tuple[int, str]:
    return (-e.directive.scope.specificity(), e.id)


class DirectiveTable:
    """Directives in force for one gateway, indexed by endpoint.

    Copy-on-write: ``apply`` and ``purge`` build new index dicts and swap them in, so a reader in
    another thread always sees a consistent index. Token buckets are mutated in place by ``admit``;
    callers that admit from several threads serialise ``admit`` (``Gateway`` does, slow path only).
    """

    __slots__ = (
        "_by_endpoint",
        "_entries",
        "_orphans",
        "_wildcard",
        "empty",
        "gateway_id",
        "lazy_purge",
        "next_expiry_ms",
    )

    def __init__(self, gateway_id: str = "", *, lazy_purge: bool = True) -> None:
        """``lazy_purge``: ``admit`` drops expired directives itself. A multi-threaded owner
        (``Gateway``) turns it off and calls ``purge`` from the thread that also ``apply``s, so two
        threads never rebuild the index at once (expired entries are skipped meanwhile).
        """
        self.gateway_id = gateway_id
        self.lazy_purge = lazy_purge
        self._entries: dict[str, _Entry] = {}
        self._orphans: list[object] = []  # waiters of limits that are gone: admit them (pump)
        self._by_endpoint: dict[str, tuple[_Entry, ...]] = {}
        self._wildcard: tuple[_Entry, ...] = ()
        self.empty = True
        self.next_expiry_ms = _NEVER

    # --- maintenance (control thread) ---
    def apply(self, d: Directive, now_ms: int) -> str:
        """Insert, refresh or release ``d``. Returns what happened:

        ``"applied"`` (new id), ``"refreshed"`` (same id; bucket level kept), ``"released"``,
        ``"expired"`` (ignored: already past ``expires_ms``), ``"stale"`` (ignored: older
        ``issued_ms`` than the one in force), ``"unknown_release"`` (release of an id not in force).
        """
        old = self._entries.get(d.id)
        if d.action.type == "release":
            if old is None:
                return "unknown_release"
            entries = dict(self._entries)
            del entries[d.id]
            self._rebuild(entries)
            return "released"
        if now_ms >= d.expires_ms:
            return "expired"
        if old is not None and d.issued_ms < old.issued_ms:
            return "stale"
        entry = _Entry(d, d.action.share_for(self.gateway_id), now_ms)
        if old is not None and old.op == entry.op == _THROTTLE:
            old.refill(now_ms)
            entry.tokens = min(old.tokens, entry.burst)
        if old is not None and old.op == entry.op == _LIMIT:
            # a refresh keeps who holds a slot and who waits; a raised limit lets waiters go
            # (``pump``)
            entry.inflight, entry.waiting = old.inflight, old.waiting
            entry.n_waiting = old.n_waiting
            old.waiting, old.n_waiting = {}, 0
        entries = dict(self._entries)
        entries[d.id] = entry
        self._rebuild(entries)
        return "applied" if old is None else "refreshed"

    def purge(self, now_ms: int) -> int:
        """Drop expired directives; return how many."""
        expired = [k for k, e in self._entries.items() if now_ms >= e.expires_ms]
        if expired:
            entries = {k: e for k, e in self._entries.items() if now_ms < e.expires_ms}
            self._rebuild(entries)
        return len(expired)

    def clear(self) -> None:
        self._rebuild({})

    def _rebuild(self, entries: dict[str, _Entry]) -> None:
        for k, e in self._entries.items():
            if e.n_waiting and entries.get(k) is not e:
                self._orphans.extend(e.take_waiting())
        ordered = sorted(entries.values(), key=_order)
        wildcard = tuple(e for e in ordered if e.directive.scope.endpoint is None)
        by_endpoint: dict[str, tuple[_Entry, ...]] = {}
        for ep in {e.directive.scope.endpoint for e in ordered} - {None}:
            by_endpoint[ep] = tuple(  # type: ignore[index]
                e for e in ordered if e.directive.scope.endpoint in (ep, None)
            )
        self._entries = entries
        self._by_endpoint = by_endpoint
        self._wildcard = wildcard
        self.next_expiry_ms = min((e.expires_ms for e in ordered), default=_NEVER)
        self.empty = not entries

    # --- reading ---
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, directive_id: object) -> bool:
        return directive_id in self._entries

    def directives(self) -> list[Directive]:
        """Directives in the table, most specific first (expired ones may linger until purged)."""
        return [e.directive for e in sorted(self._entries.values(), key=_order)]

    def in_force(self, now_ms: int) -> int:
        return sum(1 for e in self._entries.values() if now_ms < e.expires_ms)

    def tokens(self, directive_id: str, now_ms: int) -> float | None:
        """Current bucket level of a throttle directive (for tests and stats)."""
        e = self._entries.get(directive_id)
        return None if e is None or e.op != _THROTTLE else e.refill(now_ms) / _TOKEN

    # --- the hot path ---
    def admit(self, req: RequestMeta, now_ms: int, rng: RandomSource) -> Decision:
        """Decide for one request. With nothing in force for its endpoint: one dict lookup."""
        return self.decide(
            req.endpoint, req.tenant, req.agent_id, req.priority, req.attempt, req.depth,
            now_ms, rng,
        )

    def decide(
        self,
        endpoint: str,
        tenant: str,
        agent: str,
        prio: int,
        attempt: int,
        depth: int,
        now_ms: int,
        rng: RandomSource,
    ) -> Decision:
        """``admit`` with the request's fields as arguments (no ``RequestMeta`` to build)."""
        if now_ms >= self.next_expiry_ms and self.lazy_purge:
            self.purge(now_ms)
        entries = self._by_endpoint.get(endpoint, self._wildcard)
        if not entries:
            return ADMIT
        passed: list[_Entry] | None = None
        defer: Decision | None = None
        pace: Decision | None = None
        limit: _Entry | None = None
        for e in entries:
            if (
                now_ms >= e.expires_ms
                or prio < e.min_priority
                or attempt < e.min_attempt
                or depth < e.min_depth
                or (e.tenant is not None and e.tenant != tenant)
                or (e.agent_id is not None and e.agent_id != agent)
            ):
                continue
            op = e.op
            if op == _THROTTLE:
                tokens = e.refill(now_ms)
                if tokens < _TOKEN:
                    rate = e.rate_per_ms
                    due_ms = math.ceil((_TOKEN - tokens) / rate) if rate > 0 else _NEVER
                    if due_ms > e.max_delay_ms:
                        # Until the next token, but never past the directive's own expiry.
                        left_ms = e.expires_ms - now_ms
                        return Decision(
                            REJECT_KIND, retry_after_ms=max(1, min(due_ms, left_ms)),
                            directive_id=e.id, applied=_THROTTLE,
                        )
                    if pace is None or due_ms > pace.delay_ms:
                        pace = Decision(
                            DEFER_KIND, delay_ms=due_ms, directive_id=e.id, applied=_THROTTLE
                        )
                if passed is None:
                    passed = [e]
                else:
                    passed.append(e)
            elif op == _SHED:
                if e.fraction >= 1.0 or rng.random() < e.fraction:
                    return Decision(
                        REJECT_KIND, retry_after_ms=e.retry_after_ms, directive_id=e.id,
                        applied=_SHED,
                    )
            elif op == _LIMIT:
                if limit is None:
                    limit = e
            elif op == _REROUTE:
                return e.reroute
            elif op == _DEFER and defer is None:
                jitter = int(rng.random() * (e.jitter_ms + 1)) if e.jitter_ms > 0 else 0
                defer = Decision(
                    DEFER_KIND, delay_ms=e.hold_ms + jitter, directive_id=e.id, applied=_DEFER
                )
        slot = ""
        if limit is not None:
            if limit.inflight >= limit.slots or limit.n_waiting:
                if limit.max_delay_ms <= 0:
                    return Decision(
                        REJECT_KIND, retry_after_ms=max(1, limit.retry_after_ms),
                        directive_id=limit.id, applied=_THROTTLE,
                    )
                return Decision(
                    QUEUE_KIND, delay_ms=limit.max_delay_ms,
                    retry_after_ms=max(1, limit.retry_after_ms), directive_id=limit.id,
                    applied=_THROTTLE,
                )
            limit.inflight += 1
            slot = limit.id
        if passed is not None:
            for e in passed:
                e.tokens -= _TOKEN
        if pace is not None and (defer is None or pace.delay_ms >= defer.delay_ms):
            return pace._replace(slot=slot) if slot else pace
        if defer is not None:
            return defer._replace(slot=slot) if slot else defer
        return Decision(ADMIT_KIND, slot=slot) if slot else ADMIT

    # --- concurrency limits: the shell parks and wakes the requests ---
    @property
    def has_orphans(self) -> bool:
        """Waiters whose limit is gone are ready for ``pump``."""
        return bool(self._orphans)

    def enqueue(
        self, directive_id: str, priority: int, waiter: object, now_ms: int
    ) -> list[object] | None:
        """Park ``waiter`` for a slot of limit ``directive_id`` (after a ``"queue"`` decision) at
        ``now_ms``. None when that limit is gone: admit the request. Otherwise the waiters
        granted a slot at once (``waiter`` among them when a slot came free between the decision
        and this call): the caller wakes them, as after ``release``."""
        e = self._entries.get(directive_id)
        if e is None or e.op != _LIMIT:
            return None
        q = e.waiting.get(priority)
        if q is None:
            q = e.waiting[priority] = deque()
        q.append((now_ms, waiter))
        e.n_waiting += 1
        granted: list[object] = []
        e.grant(granted, now_ms)
        return granted

    def cancel(self, directive_id: str, waiter: object) -> bool:
        """Take ``waiter`` out of the queue (its wait ran out). False when it is not waiting
        there (it was granted a slot, or its limit is gone and it was handed to ``pump``)."""
        e = self._entries.get(directive_id)
        if e is None:
            return False
        for q in e.waiting.values():
            for i, (_, w) in enumerate(q):
                if w is waiter:
                    del q[i]
                    e.n_waiting -= 1
                    return True
        return False

    def release(self, slot: str, now_ms: int) -> list[object]:
        """A request holding a slot of limit ``slot`` completed (or its client gave up) at
        ``now_ms``: the waiters now granted that slot, in order (each holds a slot of the same
        limit)."""
        e = self._entries.get(slot) if slot else None
        if e is None or e.op != _LIMIT:
            return []
        e.inflight = max(0, e.inflight - 1)
        out: list[object] = []
        e.grant(out, now_ms)
        return out

    def pump(self, now_ms: int) -> list[tuple[object, str]]:
        """After ``apply`` or ``purge`` at ``now_ms``: waiters that may go now, with the slot
        each holds ("" when its limit is gone: fail open)."""
        out: list[tuple[object, str]] = [(w, "") for w in self._orphans]
        self._orphans = []
        for e in self._entries.values():
            if e.op == _LIMIT and e.n_waiting:
                granted: list[object] = []
                e.grant(granted, now_ms)
                out.extend((w, e.id) for w in granted)
        return out
