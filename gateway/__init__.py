"""Flyball's gateway SDK: enforce directives locally, emit request events, fail open visibly.

- ``gateway.enforce``: the pure enforcement core (also run by the simulator in virtual time).
- ``gateway.client``: ``Gateway`` / ``AsyncGateway`` (directive cache + event shipper + stats).
- ``gateway.asgi``: ``FlyballMiddleware`` for ASGI servers; ``gateway.httpx_transport``: transports
  for agent-side httpx clients.

See ``docs/gateway.md``.
"""

from gateway.client import AsyncGateway, Gateway
from gateway.enforce import ADMIT, Decision, DirectiveTable, RequestMeta
from gateway.events import RequestEvent
from gateway.stats import GatewayStats

__all__ = [
    "ADMIT",
    "AsyncGateway",
    "Decision",
    "DirectiveTable",
    "Gateway",
    "GatewayStats",
    "RequestEvent",
    "RequestMeta",
]
