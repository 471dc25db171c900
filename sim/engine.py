"""The discrete-event loop: intents → request trees → attempts → gateway policy → services.

Virtual time is integer ms. Events live on one ``heapq`` ordered by (time, sequence number), so a
run is a pure function of the scenario, the policy and the seed. Arrivals are generated up front
(``sim.arrivals``) and merged into the loop by a cursor instead of the heap.

Model (see scenarios/README.md for every knob):

- A service has ``slots`` and a FIFO queue (``queue_limit``; a full queue fails the attempt fast).
  Service time is lognormal(median, sigma) plus per-token terms, × the slowdown factor of an
  active fault; an ``error`` fault fails a ``fraction`` of started attempts after ``error_ms``; a
  ``capacity`` fault reduces usable slots.
- A client's timeout runs from its send: time held at the gateway (a defer, a wait for a
  concurrency slot) counts, as it does for a real client. When it fires the client gives up and
  may retry. A request still held at its gateway is then never forwarded (a proxy does not send
  on a request whose client has gone); one already dispatched stays queued / in service: the
  service still does the work (waste) unless the policy sets ``drop_expired``, which discards
  such work when it reaches the head of the queue. This is what makes a retry storm metastable.
- An intent is a tree: its root request (depth 0) goes to ``endpoints[0]``; when a request at
  depth d succeeds it spawns ``fanout[d]`` children to ``endpoints[min(d+1, last)]``. The intent is
  good when every request succeeded by the deadline; it fails when a request runs out of attempts;
  it is abandoned when a retry would start after the deadline. Remaining in-flight work of a dead
  intent is still served (waste).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.columns import STATUS_ERROR, STATUS_OK, STATUS_REJECTED, STATUS_TIMEOUT
from sim.arrivals import Arrivals, generate
from sim.backoff import retry_delay_ms
from sim.context import K_CALL, K_DISPATCH, K_DONE, K_EDGE, K_SEND, K_TIMEOUT, SimContext
from sim.model import ABANDONED, FAILED, GOOD, LATE, LIVE, N_COLS, Attempt, Intent, Request
from sim.policies.base import DEFER, REJECT, REROUTE, WAIT, GatewayPolicy, Policy
from sim.rand import RandomStream
from sim.scenario import Scenario, ServiceSpec


class Service:
    """A service's running state."""

    __slots__ = ("busy", "dropped", "error_ms", "faults", "k_in", "k_out", "log_median", "queue",
                 "queue_limit", "sigma", "slots", "spec", "work_ms")

    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.slots = spec.slots
        self.queue_limit = spec.queue_limit
        self.busy = 0
        self.queue: list[Attempt] = []  # FIFO with a moving head (see Engine._start_work)
        self.log_median = math.log(spec.median_ms)
        self.sigma = spec.sigma
        self.error_ms = spec.error_ms
        self.k_in = spec.ms_per_token_in
        self.k_out = spec.ms_per_token_out
        self.faults = spec.faults
        self.work_ms = 0
        self.dropped = 0

    def state_at(self, t_ms: int) -> tuple[int, float, float]:
        """(usable slots, slowdown factor, error fraction) at ``t_ms``."""
        slots = self.slots
        factor = 1.0
        err = 0.0
        for f in self.faults:
            if f.start_ms <= t_ms < f.end_ms:
                if f.kind == "slowdown":
                    factor *= f.factor
                elif f.kind == "error":
                    err = max(err, f.fraction)
                else:
                    slots = min(slots, max(1, int(self.slots * f.fraction)))
        return slots, factor, err


@dataclass(frozen=True, slots=True)
class RunResult:
    """Raw outcome of one run; ``sim.metrics.compute`` turns it into metrics."""

    scenario: Scenario
    policy: str
    seed: int
    arrivals: Arrivals
    priority: npt.NDArray[np.int64]  # per intent (the root's priority)
    outcome: npt.NDArray[np.int64]  # per intent: sim.model codes
    done_ms: npt.NDArray[np.int64]  # per intent: when it finished (or died); -1 if live at the end
    rows: npt.NDArray[np.int64]  # attempt log, shape (n, N_COLS)
    work_ms: int  # service work of every kind
    useful_work_ms: int  # service work of attempts delivered OK to intents that ended good
    dropped: int  # expired attempts discarded by drop_expired
    directives: list[tuple[int, Any]]  # (virtual issue ms, schemas.directive.Directive)
    policy_stats: dict[str, int | float]
    ctx: SimContext
    end_ms: int


class Engine:
    def __init__(self, scenario: Scenario, policy_name: str, params: dict[str, Any] | None = None,
                 seed: int | None = None) -> None:
        from sim.policies import make_policy

        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        seeds = np.random.SeedSequence(self.seed).spawn(3)
        self.arrivals = generate(scenario, np.random.default_rng(seeds[0]))
        self.rng = RandomStream(np.random.default_rng(seeds[1]))
        self.ctx = SimContext(scenario, RandomStream(np.random.default_rng(seeds[2])))
        self.policy_name = policy_name
        self.policy: Policy = make_policy(policy_name, self.ctx, params)
        self.gateways: list[GatewayPolicy] = [
            self.policy.gateway(g) for g in range(scenario.gateways)
        ]
        self.services = [Service(s) for s in scenario.services]
        self.heads = [0] * len(self.services)
        self.drop_expired = self.policy.drop_expired
        n = len(self.arrivals)
        self.outcome = [LIVE] * n
        self.done_ms = [-1] * n
        self.priority = [0] * n
        self.useful_work_ms = 0
        self._next_id = 0
        self.tenants = scenario.tenants
        self.tenant_endpoints = [
            tuple(self.ctx.endpoint_index[e] for e in t.endpoints) for t in scenario.tenants
        ]
        self.ctx.reject = self._reject_held

    # --- ids -------------------------------------------------------------------------------
    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    # --- the loop --------------------------------------------------------------------------
    def run(self) -> RunResult:
        sc = self.scenario
        ctx = self.ctx
        heap = ctx.heap
        for i, svc in enumerate(self.services):
            for f in svc.faults:
                ctx.push(f.start_ms, K_EDGE, i)
                ctx.push(f.end_ms, K_EDGE, i)
        self.policy.start()
        arr = self.arrivals
        arr_t = arr.t_ms.tolist()
        arr_ten = arr.tenant.tolist()
        arr_agent = arr.agent.tolist()
        arr_in = arr.tokens_in.tolist()
        arr_out = arr.tokens_out.tolist()
        n_arr = len(arr_t)
        i_arr = 0
        end_ms = sc.duration_ms + sc.max_drain_ms()
        heappop = heapq.heappop
        send = self._send
        dispatch = self._dispatch
        done = self._done
        timeout = self._timeout
        start_work = self._start_work
        arrive = self._arrive
        now = 0
        while True:
            if i_arr < n_arr and (not heap or arr_t[i_arr] <= heap[0][0]):
                now = arr_t[i_arr]
                ctx.now_ms = now
                arrive(i_arr, now, arr_ten[i_arr], arr_agent[i_arr], arr_in[i_arr], arr_out[i_arr])
                i_arr += 1
                continue
            if not heap:
                break
            t, _, kind, obj = heappop(heap)
            if t > end_ms:
                heap.clear()
                break
            now = t
            ctx.now_ms = t
            if kind == K_DONE:
                done(obj, t)
            elif kind == K_TIMEOUT:
                timeout(obj, t)
            elif kind == K_SEND:
                send(obj, t)
            elif kind == K_DISPATCH:
                dispatch(obj, t)
            elif kind == K_CALL:
                obj(t)
            elif kind == K_EDGE:
                start_work(obj, t)
        self.policy.finish(now)
        rows = (
            np.asarray(ctx.rows, dtype=np.int64)
            if ctx.rows
            else np.zeros((0, N_COLS), dtype=np.int64)
        )
        return RunResult(
            scenario=sc,
            policy=self.policy_name,
            seed=self.seed,
            arrivals=arr,
            priority=np.asarray(self.priority, dtype=np.int64),
            outcome=np.asarray(self.outcome, dtype=np.int64),
            done_ms=np.asarray(self.done_ms, dtype=np.int64),
            rows=rows,
            work_ms=sum(s.work_ms for s in self.services),
            useful_work_ms=self.useful_work_ms,
            dropped=sum(s.dropped for s in self.services),
            directives=list(self.policy.directives()),
            policy_stats=dict(self.policy.stats()),
            ctx=ctx,
            end_ms=now,
        )

    # --- intents and requests --------------------------------------------------------------
    def _arrive(self, idx: int, now: int, tenant: int, agent: int, tin: int, tout: int) -> None:
        spec = self.tenants[tenant]
        fanout = spec.fanout
        for ph in spec.phases:
            if ph.fanout is not None and ph.start_ms <= now < ph.end_ms:
                fanout = ph.fanout
        intent = Intent(idx, tenant, agent, agent % self.scenario.gateways, spec.priority, now,
                        now + spec.deadline_ms, fanout, tin, tout)
        self.priority[idx] = spec.priority
        req = Request(self._id(), intent, 0, 0, self.tenant_endpoints[tenant][0], spec.priority)
        self._send(req, now)

    def _send(self, req: Request, now: int) -> None:
        intent = req.intent
        if intent.state != LIVE:
            return
        if now > intent.deadline_ms:
            self._finish_intent(intent, ABANDONED, now)
            return
        a = Attempt(self._id(), req, req.attempts, intent.tenant, intent.gateway, now)
        req.attempts += 1
        d = self.gateways[intent.gateway].admit(a, now)
        a.applied = d.applied
        a.directive = d.directive
        code = d.code
        if code == REJECT:
            a.retry_after_ms = d.retry_after_ms
            a.final = d.final
            self._resolve(a, STATUS_REJECTED, now)
            return
        # the client's clock runs from its send, through any hold at the gateway
        self.ctx.push(now + self.tenants[a.tenant].retry.timeout_ms, K_TIMEOUT, a)
        if code == WAIT:  # the policy holds it: it pushes K_DISPATCH or calls ctx.reject later
            return
        if code == DEFER:
            self.ctx.push(now + d.hold_ms, K_DISPATCH, a)
        else:
            if code == REROUTE:
                a.endpoint = d.target
            self._dispatch(a, now)

    def _reject_held(self, a: Attempt, now: int, retry_after_ms: int) -> None:
        """A policy rejects an attempt it held (``WAIT``) at ``now``; one whose client already
        gave up has its outcome."""
        if a.resolved:
            return
        a.retry_after_ms = retry_after_ms
        self._resolve(a, STATUS_REJECTED, now)

    def _dispatch(self, a: Attempt, now: int) -> None:
        if a.gone:  # its client gave up while it was held at the gateway: it is not sent
            self.gateways[a.gateway].on_service_done(a, now)  # a slot granted to it is free
            return
        a.dispatch_ms = now
        a.sent = True
        svc_i = a.endpoint
        svc = self.services[svc_i]
        if len(svc.queue) - self.heads[svc_i] >= svc.queue_limit:
            self._resolve(a, STATUS_ERROR, now)
            self.gateways[a.gateway].on_service_done(a, now)
            return
        svc.queue.append(a)
        self._start_work(svc_i, now)

    def _start_work(self, svc_i: int, now: int) -> None:
        svc = self.services[svc_i]
        q = svc.queue
        head = self.heads[svc_i]
        if head >= len(q):
            return
        slots, factor, err = svc.state_at(now)
        rng = self.rng
        push = self.ctx.push
        while svc.busy < slots and head < len(q):
            a = q[head]
            head += 1
            if a.gone and self.drop_expired:
                svc.dropped += 1
                self.gateways[a.gateway].on_service_done(a, now)
                continue
            intent = a.req.intent
            if err > 0.0 and rng.random() < err:
                ms = svc.error_ms
                a.status = STATUS_ERROR
            else:
                x = math.exp(svc.log_median + svc.sigma * rng.normal())
                if svc.k_in or svc.k_out:
                    x += svc.k_in * intent.tokens_in + svc.k_out * intent.tokens_out
                ms = int(x * factor) + 1
                a.status = STATUS_OK
            a.svc_ms = ms
            svc.busy += 1
            push(now + ms, K_DONE, a)
        if head > 4096 and head * 2 > len(q):
            del q[:head]
            head = 0
        self.heads[svc_i] = head

    def _done(self, a: Attempt, now: int) -> None:
        svc_i = a.endpoint
        svc = self.services[svc_i]
        svc.busy -= 1
        svc.work_ms += a.svc_ms
        if not a.resolved:
            self._resolve(a, a.status, now)
        self.gateways[a.gateway].on_service_done(a, now)
        self._start_work(svc_i, now)

    def _timeout(self, a: Attempt, now: int) -> None:
        if a.resolved:
            return
        a.gone = True
        self._resolve(a, STATUS_TIMEOUT, now)

    def _resolve(self, a: Attempt, status: int, now: int) -> None:
        """The client learns the attempt's outcome: log it, tell the policy, advance the tree."""
        a.resolved = True
        a.status = status
        req = a.req
        intent = req.intent
        # What a gateway emits (gateway/asgi.py, httpx_transport.py): the attempt's own time at
        # the service, excluding a deliberate gateway hold, so the governor's latency signal is
        # the service's and not its own defer. ``dispatch_ms`` is ``start_ms`` when not held.
        # A request whose client gave up while the gateway held it never reached the service:
        # the gateway reports it as refused (after the time it was held), not as the service's
        # timeout (the client retries as after any timeout)
        shown = STATUS_REJECTED if status == STATUS_TIMEOUT and not a.sent else status
        self.ctx.rows.append((
            a.dispatch_ms, now - a.dispatch_ms, shown, a.no, a.depth, a.priority, a.tenant,
            intent.agent, a.endpoint, a.gateway, a.id, req.id, intent.id, req.parent_id,
            intent.tokens_in, intent.tokens_out, a.applied, a.directive,
        ))
        gw = self.gateways[a.gateway]
        gw.on_result(a, now)
        if intent.state != LIVE:
            return
        if status == STATUS_OK:
            intent.ok_work_ms += a.svc_ms
            intent.pending -= 1
            d = req.depth
            fanout = intent.fanout
            if d < len(fanout) and fanout[d] > 0:
                eps = self.tenant_endpoints[a.tenant]
                ep = eps[min(d + 1, len(eps) - 1)]
                prio = min(9, req.priority + self.tenants[a.tenant].child_priority_step)
                n = fanout[d]
                intent.pending += n
                for _ in range(n):
                    self._send(Request(self._id(), intent, req.id, d + 1, ep, prio), now)
            if intent.pending == 0 and intent.state == LIVE:
                self._finish_intent(intent, GOOD if now <= intent.deadline_ms else LATE, now)
            return
        retry = self.tenants[a.tenant].retry
        if status == STATUS_REJECTED:
            retryable = not a.final
        elif status == STATUS_TIMEOUT:
            retryable = retry.on_timeout
        else:
            retryable = retry.on_error
        if not retryable or req.attempts >= retry.max_attempts:
            self._finish_intent(intent, FAILED, now)
            return
        client_ms = retry_delay_ms(retry, req.attempts - 1, req.prev_delay_ms, self.rng)
        req.prev_delay_ms = client_ms
        delay = gw.retry_delay_ms(a, client_ms)
        if status == STATUS_REJECTED and a.retry_after_ms > delay:
            delay = a.retry_after_ms
        self.ctx.push(now + delay, K_SEND, req)

    def _finish_intent(self, intent: Intent, state: int, now: int) -> None:
        intent.state = state
        self.outcome[intent.id] = state
        self.done_ms[intent.id] = now
        if state == GOOD:
            self.useful_work_ms += intent.ok_work_ms


def simulate(scenario: Scenario, policy: str, seed: int | None = None,
             params: dict[str, Any] | None = None) -> RunResult:
    """Run one scenario under one policy. ``params`` overrides the scenario's ``[policies.*]``."""
    p = dict(scenario.policy_params.get(policy, {}))
    if params:
        p.update(params)
    return Engine(scenario, policy, p, seed).run()

