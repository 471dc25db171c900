"""Per-entity records of the event loop (``__slots__``: millions are made in a long run).

Codes: intent states ``LIVE``/``GOOD``/``LATE``/``FAILED``/``ABANDONED``; attempt statuses are the
``schemas.columns`` codes (``STATUS_OK`` ...). Indices (tenant, agent, endpoint, gateway) are ints
into the name tables of ``sim.engine.SimContext``.
"""

from __future__ import annotations

from typing import Final

LIVE: Final = 0
GOOD: Final = 1  # every request OK, finished by the deadline
LATE: Final = 2  # every request OK, finished after the deadline (the agent had given up)
FAILED: Final = 3  # a request ran out of retries (or was rejected as final)
ABANDONED: Final = 4  # the deadline passed before the tree finished
OUTCOME_NAMES: Final = ("live", "good", "late", "failed", "abandoned")

# Row layout of the attempt log (one int tuple per attempt, appended when the client learns the
# result). Column indices:
R_START: Final = 0  # attempt start at the service (after any gateway hold), virtual ms
R_LATENCY: Final = 1
R_STATUS: Final = 2
R_ATTEMPT: Final = 3
R_DEPTH: Final = 4
R_PRIORITY: Final = 5
R_TENANT: Final = 6
R_AGENT: Final = 7
R_ENDPOINT: Final = 8
R_GATEWAY: Final = 9
R_ID: Final = 10
R_REQUEST: Final = 11
R_INTENT: Final = 12
R_PARENT: Final = 13
R_TOKENS_IN: Final = 14
R_TOKENS_OUT: Final = 15
R_APPLIED: Final = 16
R_DIRECTIVE: Final = 17  # index into SimContext.directive_ids (0 = none)
N_COLS: Final = 18

Row = tuple[
    int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int
]


class Intent:
    __slots__ = (
        "agent",
        "arrival_ms",
        "deadline_ms",
        "fanout",
        "gateway",
        "id",
        "ok_work_ms",
        "pending",
        "priority",
        "state",
        "tenant",
        "tokens_in",
        "tokens_out",
    )

    def __init__(
        self, id: int, tenant: int, agent: int, gateway: int, priority: int, arrival_ms: int,
        deadline_ms: int, fanout: tuple[int, ...], tokens_in: int, tokens_out: int,
    ) -> None:
        self.id = id
        self.tenant = tenant
        self.agent = agent
        self.gateway = gateway
        self.priority = priority
        self.arrival_ms = arrival_ms
        self.deadline_ms = deadline_ms
        self.fanout = fanout
        self.tokens_in = tokens_in
        self.tokens_out = tokens_out
        self.pending = 1
        self.state = LIVE
        self.ok_work_ms = 0


class Request:
    __slots__ = ("attempts", "depth", "endpoint", "id", "intent", "parent_id", "prev_delay_ms",
                 "priority")

    def __init__(self, id: int, intent: Intent, parent_id: int, depth: int, endpoint: int,
                 priority: int) -> None:
        self.id = id
        self.intent = intent
        self.parent_id = parent_id
        self.depth = depth
        self.endpoint = endpoint
        self.priority = priority
        self.attempts = 0
        self.prev_delay_ms = 0


class Attempt:
    """One attempt of a request. ``no`` is 0 for the first attempt, 1 for the first retry, ...

    ``endpoint`` is where it is sent (a reroute changes it); ``gone`` is set when the client timed
    out (the service may still hold or run it); ``sent`` once the gateway forwarded it;
    ``svc_ms`` is the service work it consumed.
    """

    __slots__ = (
        "applied",
        "depth",
        "directive",
        "dispatch_ms",
        "endpoint",
        "final",
        "gateway",
        "gone",
        "id",
        "no",
        "priority",
        "req",
        "resolved",
        "retry_after_ms",
        "sent",
        "slot",
        "start_ms",
        "status",
        "svc_ms",
        "tenant",
    )

    def __init__(self, id: int, req: Request, no: int, tenant: int, gateway: int,
                 start_ms: int) -> None:
        self.id = id
        self.req = req
        self.no = no
        self.tenant = tenant
        self.gateway = gateway
        self.endpoint = req.endpoint
        self.priority = req.priority
        self.depth = req.depth
        self.start_ms = start_ms
        self.dispatch_ms = start_ms
        self.svc_ms = 0
        self.status = 0
        self.resolved = False
        self.gone = False
        self.sent = False  # forwarded to the service (not only held at the gateway)
        self.applied = 0
        self.directive = 0
        self.retry_after_ms = 0
        self.final = False
        self.slot = ""  # the gateway concurrency slot (limit id) it holds while in flight
